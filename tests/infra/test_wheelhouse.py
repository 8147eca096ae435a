"""The worker artifact (filejobs.ops.artifact): a pinned wheelhouse built from the installed package,
universal (x86_64 and arm64), reproducible, and installable with no index and no network."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from filejobs import __version__
from filejobs.ops import artifact
from filejobs.ops.template import load_template
from testing.helpers import worker_python
import testing.userdata as ud


def members(path: str) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_every_wheel_is_pure_python_and_pinned(wheelhouse):
    files = members(wheelhouse.path)
    wheels = sorted(n.split("/", 1)[1] for n in files if n.endswith(".whl"))
    assert all(artifact.wheel_tags(w)[1:] == ("none", "any") for w in wheels), wheels
    locked = artifact.read_lock()
    assert len(wheels) == len(locked) + 1 and f"filejobs-{__version__}-py3-none-any.whl" in wheels
    requirements = files["wheelhouse/requirements.txt"].decode()
    for pin in locked:
        assert f"{pin.name}=={pin.version} --hash=sha256:{pin.sha256[0]}" in requirements
    hashes = dict(re.findall(r"^(\S+)==\S+ --hash=sha256:([0-9a-f]{64})", requirements, re.M))
    for name, data in files.items():
        if name.endswith(".whl"):
            project = os.path.basename(name).split("-")[0].replace("_", "-").lower()
            assert hashlib.sha256(data).hexdigest() == hashes[project], name


def test_the_key_is_the_templates_default_code_key(wheelhouse):
    assert wheelhouse.key == artifact.artifact_key() == f"code/filejobs-{__version__}-wheelhouse.tar.gz"
    assert load_template()["Parameters"]["CodeKey"]["Default"] == wheelhouse.key
    assert dict(ud.split_config(ud.read(ud.USER_DATA))[1])["CODE_KEY"] == wheelhouse.key


def test_filejobs_own_wheel_carries_the_package_its_data_and_a_valid_record(tmp_path):
    path = artifact.build_filejobs_wheel(str(tmp_path))
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        info = f"filejobs-{__version__}.dist-info"
        assert {"getjobs.py", "sendjobs.py", "filejobs/infra/stack.yaml", "filejobs/infra/worker-requirements.lock",
                "filejobs/ops/artifact.py", f"{info}/METADATA", f"{info}/WHEEL", f"{info}/RECORD",
                f"{info}/entry_points.txt"} <= names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "getjobs = getjobs:main" in zf.read(f"{info}/entry_points.txt").decode()
        for line in zf.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.rsplit(",", 2)
            if digest:
                data = zf.read(name)
                assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
                    b"=").decode() and int(size) == len(data), name


def test_the_same_package_gives_the_same_archive(wheelhouse, tmp_path):
    again = artifact.build_wheelhouse(str(tmp_path), cache_dir=os.path.join(sys.prefix, "filejobs-wheel-cache"))
    assert again.sha256 == wheelhouse.sha256


def test_the_cache_is_enough_and_pip_is_not_called(tmp_path):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip download called although the cache has every locked wheel")

    out = tmp_path / "out"
    out.mkdir()
    wheels = artifact.download_dependencies(str(out), cache_dir=os.path.join(sys.prefix, "filejobs-wheel-cache"),
                                            run=no_pip)
    assert len(wheels) == len(artifact.read_lock())


def test_a_failed_download_is_one_line(tmp_path):
    failed = lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "ERROR: No matching distribution\n")  # noqa: E731
    with pytest.raises(artifact.ArtifactError, match="^pip download failed: ERROR: No matching distribution$"):
        artifact.download_dependencies(str(tmp_path), cache_dir=str(tmp_path / "empty-cache"), run=failed)


def test_a_platform_wheel_is_refused():
    with pytest.raises(artifact.ArtifactError, match="x86_64 and arm64"):
        artifact.check_universal("numpy-2.1.0-cp312-cp312-manylinux_2_17_x86_64.whl")
    artifact.check_universal("six-1.17.0-py2.py3-none-any.whl")


def test_the_lock_satisfies_the_package_requirements():
    pins = {p.name: tuple(int(x) for x in re.findall(r"\d+", p.version)[:3]) for p in artifact.read_lock()}
    assert (1, 35, 10) <= pins["boto3"] < (2,) and (8, 1) <= pins["click"] < (9,)
    assert {"botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"} <= set(pins)


def _offline(argv: list[str]) -> list[str]:
    """Run with no network at all when the kernel lets us (a private network namespace)."""
    probe = subprocess.run(["unshare", "--net", "--map-root-user", "true"], capture_output=True) \
        if shutil.which("unshare") else None
    return ["unshare", "--net", "--map-root-user", *argv] if probe and probe.returncode == 0 else argv


@pytest.mark.slow
def test_the_wheelhouse_installs_in_a_fresh_venv_with_no_index_and_no_network(wheelhouse, tmp_path):
    with tarfile.open(wheelhouse.path) as tar:
        tar.extractall(tmp_path, filter="data")
    venv = tmp_path / "venv"
    python = worker_python()
    if python is None:
        pytest.skip("no Python >= 3.10 to install the workers' wheelhouse on")
    # The venv gets no pip of its own (ensurepip is half the test's CPU): this one's pip installs into
    # it. The boot test (test_user_data.py) runs user data's own venv and pip.
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9"}
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python")]
    install = subprocess.run(_offline([
        *pip, "install", "--isolated", "--no-index", "--find-links",
        str(tmp_path / "wheelhouse"), "--require-hashes", "--no-cache-dir", "--disable-pip-version-check", "-q",
        "-r", str(tmp_path / "wheelhouse/requirements.txt")]), env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    helped = subprocess.run(_offline([str(venv / "bin/getjobs"), "--help"]), env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "Usage: getjobs" in helped.stdout
    # A tampered wheel is refused by its hash.
    wheel = next((tmp_path / "wheelhouse").glob("six-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    again = subprocess.run([*pip, "install", "--isolated", "--no-index",
                            "--force-reinstall", "--find-links", str(tmp_path / "wheelhouse"), "--require-hashes",
                            "--no-cache-dir", "-q", "-r", str(tmp_path / "wheelhouse/requirements.txt")],
                           env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "hash" in again.stderr.lower()


def test_the_wheels_are_chosen_for_the_python_the_workers_run():
    """Whatever Python builds the artifact, pip picks wheels for user data's interpreter."""
    from filejobs.ops.artifact import WORKER_PYTHON_VERSION

    script = open(os.path.join(os.path.dirname(__file__), "..", "..", "user-data.sh"), encoding="utf-8").read()
    assert f"\nPYTHON=python{WORKER_PYTHON_VERSION}\n" in script
