"""The worker artifact: a pinned wheelhouse, built from the installed package (no checkout needed).

``build_wheelhouse`` writes ``filejobs-<version>-wheelhouse.tar.gz``: a ``wheelhouse/`` folder with
filejobs' own wheel (made from the installed distribution's files), the wheel of every dependency
pinned in ``filejobs/infra/worker-requirements.lock`` (downloaded with ``pip download --no-deps
--only-binary=:all: --require-hashes``, or taken from a cache keyed by the lock's hash) and a
``requirements.txt`` naming all of them with their hashes. User data installs it with
``pip install --no-index --require-hashes``: no package index at boot, the same bytes on every
instance. Every wheel must be ``none-any`` (pure Python), so one wheelhouse serves x86_64 and arm64.

No boto3 (uploading is the caller's: ``make artifact`` or ``jobctl deploy``), no click.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass

from filejobs import __version__

LOCK_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "infra",
                         "worker-requirements.lock")
_PIN_RE = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)")
_HASH_RE = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same package gives the same bytes


class ArtifactError(Exception):
    """The wheelhouse cannot be built (one line)."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    sha256: tuple[str, ...]


@dataclass(frozen=True)
class Artifact:
    path: str
    key: str  # where user data fetches it: the stack's CodeKey
    sha256: str


def artifact_key(version: str = __version__) -> str:
    return f"code/filejobs-{version}-wheelhouse.tar.gz"


def read_lock(path: str = LOCK_PATH) -> list[Pin]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read().replace("\\\n", " ")
    pins = []
    for line in text.splitlines():
        m = _PIN_RE.match(line.strip())
        if m:
            hashes = tuple(_HASH_RE.findall(line))
            if not hashes:
                raise ArtifactError(f"{path}: {m.group(1)} has no --hash")
            pins.append(Pin(m.group(1), m.group(2), hashes))
    return pins


def lock_digest(path: str = LOCK_PATH) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_tags(filename: str) -> tuple[str, str, str]:
    """(python, abi, platform) of a wheel file name."""
    parts = filename[:-len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise ArtifactError(f"not a wheel file name: {filename}")
    return parts[-3], parts[-2], parts[-1]


def check_universal(filename: str) -> None:
    _, abi, platform = wheel_tags(filename)
    if (abi, platform) != ("none", "any"):
        raise ArtifactError(f"{filename} is built for one platform ({abi}-{platform}); the wheelhouse must serve "
                            "x86_64 and arm64")


# --------------------------------------------------------------------------- filejobs' own wheel


def _package_files(name: str) -> list[tuple[str, str]]:
    """(archive name, path) of a top-level module or package as Python imports it."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ArtifactError(f"{name} is not importable")
    if not spec.submodule_search_locations:
        return [(f"{name}.py", spec.origin)]
    root = list(spec.submodule_search_locations)[0]
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if not f.endswith((".pyc", ".pyo")):
                path = os.path.join(folder, f)
                out.append((os.path.join(name, os.path.relpath(path, root)).replace(os.sep, "/"), path))
    return out


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def build_filejobs_wheel(dest_dir: str) -> str:
    """filejobs' wheel from the installed distribution (an editable install works too)."""
    try:
        dist = importlib.metadata.distribution("filejobs")
    except importlib.metadata.PackageNotFoundError:
        raise ArtifactError("filejobs is not installed (pip install filejobs, or pip install -e . in a checkout)") \
            from None
    version = dist.version
    top_level = (dist.read_text("top_level.txt") or "filejobs\ngetjobs\nsendjobs").split()
    info = f"filejobs-{version}.dist-info"
    entries = [(arc, _read(path)) for name in sorted(top_level) for arc, path in _package_files(name)]
    # An egg-info (a checkout on sys.path before site-packages) has the same metadata as PKG-INFO.
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not metadata:
        raise ArtifactError(f"no metadata for filejobs {version} (reinstall it)")
    entries.append((f"{info}/METADATA", metadata.encode()))
    entries.append((f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode()))
    entries.append((f"{info}/top_level.txt", ("\n".join(top_level) + "\n").encode()))
    entries.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: filejobs.ops.artifact\n"
                                     b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    record = "\n".join(_record_line(a, d) for a, d in entries) + f"\n{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode()))
    path = os.path.join(dest_dir, f"filejobs-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in entries:
            zinfo = zipfile.ZipInfo(arcname, _EPOCH)
            zinfo.external_attr = 0o644 << 16
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zinfo, data)
    return path


# --------------------------------------------------------------------------- dependencies


def _cached(pins: list[Pin], folder: str) -> dict[str, str] | None:
    """{pin name: wheel path} if ``folder`` holds a wheel of every pin with a locked hash."""
    if not os.path.isdir(folder):
        return None
    by_hash = {sha256_of(os.path.join(folder, f)): os.path.join(folder, f) for f in os.listdir(folder)
               if f.endswith(".whl")}
    found = {p.name: next((by_hash[h] for h in p.sha256 if h in by_hash), None) for p in pins}
    return None if None in found.values() else found


#: The workers' Python (user-data.sh's PYTHON): the wheels are chosen for it, not for whichever
#: Python builds the artifact (a laptop's 3.9 would find no boto3 release that still supports it).
WORKER_PYTHON_VERSION = "3.12"
_FOR_WORKERS = ("--only-binary=:all:", "--python-version", WORKER_PYTHON_VERSION)


def download_dependencies(dest_dir: str, *, lock: str = LOCK_PATH, cache_dir: str | None = None,
                          run=subprocess.run, python: str = sys.executable) -> list[str]:
    """The locked wheels in ``dest_dir``; from ``cache_dir/<lock hash>/`` when it has them all."""
    pins = read_lock(lock)
    folder = os.path.join(cache_dir, lock_digest(lock)) if cache_dir else tempfile.mkdtemp(prefix="wheels-")
    found = _cached(pins, folder)
    if found is None:
        os.makedirs(folder, exist_ok=True)
        result = run([python, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--no-deps",
                      *_FOR_WORKERS, "--require-hashes", "--dest", folder, "-r", lock],
                     capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()
            raise ArtifactError(f"pip download failed: {tail[-1] if tail else 'exit ' + str(result.returncode)}")
        found = _cached(pins, folder)
        if found is None:
            raise ArtifactError(f"pip download did not produce every locked wheel in {folder}")
    out = []
    for path in found.values():
        check_universal(os.path.basename(path))
        out.append(shutil.copy2(path, dest_dir))
    if not cache_dir:
        shutil.rmtree(folder, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- the wheelhouse


def _add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def build_wheelhouse(out_dir: str, *, cache_dir: str | None = None, lock: str = LOCK_PATH,
                     run=subprocess.run) -> Artifact:
    """Write the wheelhouse archive into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
        own = build_filejobs_wheel(tmp)
        deps = download_dependencies(tmp, lock=lock, cache_dir=cache_dir, run=run)
        version = os.path.basename(own).split("-")[1]
        lines = [f"filejobs=={version} --hash=sha256:{sha256_of(own)}"]
        lines += [f"{p.name}=={p.version} " + " ".join(f"--hash=sha256:{h}" for h in p.sha256) for p in read_lock(lock)]
        requirements = ("# Installed by user data: pip install --no-index --require-hashes -r requirements.txt\n"
                        + "\n".join(lines) + "\n").encode()
        path = os.path.join(out_dir, os.path.basename(artifact_key(version)))
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, "wheelhouse", None)
            _add(tar, "wheelhouse/requirements.txt", requirements)
            for wheel in sorted([own] + deps, key=os.path.basename):
                _add(tar, f"wheelhouse/{os.path.basename(wheel)}", _read(wheel))
    return Artifact(path=path, key=artifact_key(version), sha256=sha256_of(path))


def write_lock(requirements: list[str], path: str = LOCK_PATH, *, run=subprocess.run,
               python: str = sys.executable) -> list[Pin]:
    """Resolve ``requirements`` (e.g. ["boto3==1.44.8", "click==8.5.1"]) with pip and write the lock."""
    with tempfile.TemporaryDirectory(prefix="lock-") as tmp:
        result = run([python, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                      *_FOR_WORKERS, "--dest", tmp, *requirements], capture_output=True, text=True)
        if result.returncode != 0:
            raise ArtifactError(f"pip download failed: {(result.stderr or '').strip()[-300:]}")
        pins = []
        for f in sorted(os.listdir(tmp)):
            check_universal(f)
            name, version = f.split("-")[:2]
            pins.append(Pin(name.replace("_", "-"), version, (sha256_of(os.path.join(tmp, f)),)))
    with open(LOCK_PATH, encoding="utf-8") as fh:
        header = "".join(line for line in fh if line.startswith("#"))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(header + "".join(f"{p.name}=={p.version} \\\n    --hash=sha256:{p.sha256[0]}\n" for p in pins))
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m filejobs.ops.artifact", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="dist", help="folder for the archive (default: dist)")
    parser.add_argument("--cache", default=None, help="keep downloaded wheels here, keyed by the lock's hash")
    parser.add_argument("--lock", nargs="+", metavar="REQUIREMENT", help="rewrite the lock file from these pins")
    args = parser.parse_args(argv)
    try:
        if args.lock:
            for pin in write_lock(args.lock):
                print(f"{pin.name}=={pin.version}", file=sys.stderr)
            return 0
        artifact = build_wheelhouse(args.out, cache_dir=args.cache)
    except (ArtifactError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(artifact.path)
    print(f"key {artifact.key} sha256 {artifact.sha256}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
