"""Hostile file names round-trip through sendjobs → SQS → getjobs → S3 untouched, and no
name is ever interpreted by a shell.

The shell-looking names do `cd; touch PWNED_x` (no slash is allowed in a file name, so they go
to $HOME): if anything ran them through a shell, a PWNED file would appear in the private HOME
given to both tools. Newlines are left out: moto cannot store keys containing one (see
/work/shared/notes/local-endpoints.md); tab and carriage return are in.
"""

from __future__ import annotations

import os
import unicodedata

import pytest

from testing.helpers import REGION, list_keys, run_tool, unique

pytestmark = pytest.mark.e2e

NFC = unicodedata.normalize("NFC", "café.txt")
NFD = unicodedata.normalize("NFD", "café.txt")
LONG_ASCII = "a" * 251 + ".txt"  # 255 bytes
LONG_UTF8 = "é" * 125 + "x.txt"  # 250 + 5 = 255 bytes

NAMES = [
    "with space.txt",
    "  leading and trailing spaces  ",
    "quote'single.txt",
    'quote"double.txt',
    "$(cd;touch PWNED_A).txt",
    "`cd;touch PWNED_B`.txt",
    "x;cd;touch PWNED_C.txt",
    "a|(cd;touch PWNED_D).txt",
    "a&&cd&&touch PWNED_E",
    "-rf",
    "--help",
    "-",
    "tab\there.txt",
    "cr\rhere.txt",
    NFC,
    NFD,
    LONG_ASCII,
    LONG_UTF8,
    "*glob?[x].txt",
    "~tilde",
    "back\\slash.txt",
    "<in>out.txt",
    "emoji 😀.txt",
    "%41%2F percent.txt",
    ".hidden",
    "x.",
]
DEEP = "/".join(f"level{i:02d} $(cd;touch PWNED_DEEP)" if i == 7 else f"level{i:02d}" for i in range(1, 21))


def test_nfc_and_nfd_differ():
    assert NFC != NFD and len(LONG_ASCII.encode()) == 255 and len(LONG_UTF8.encode()) == 255


def test_hostile_names_round_trip(server, make_resources, tmp_path):
    res = make_resources(server, max_receive_count=2, visibility_timeout_s=20)
    home = tmp_path / "home"
    home.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    expected: dict[str, bytes] = {}
    for i, name in enumerate(NAMES):
        body = f"{i}:{name}\n".encode("utf-8", "surrogateescape")
        (data / name).write_bytes(body)
        expected[name] = body
    deep_dir = data / DEEP
    deep_dir.mkdir(parents=True)
    for name in ("deep.txt", "-n", "$(cd;touch PWNED_F)"):
        (deep_dir / name).write_bytes(f"deep:{name}\n".encode())
        expected[f"{DEEP}/{name}"] = f"deep:{name}\n".encode()
    assert len({unicodedata.normalize("NFC", n) for n in os.listdir(data)}) == len(os.listdir(data)) - 1

    env = dict(server.env, HOME=str(home))
    in_prefix, out_prefix = unique("in") + "/", unique("out") + "/"
    sent = run_tool("sendjobs", data, res.bucket, in_prefix, out_prefix, res.queue_url, REGION, "--json", "-q",
                    env=env, cwd=str(home), timeout=120)
    assert sent.returncode == 0, sent.stderr
    assert "Traceback" not in sent.stderr
    assert sorted(list_keys(server.s3, res.bucket, in_prefix)) == sorted(in_prefix + k for k in expected)

    work = tmp_path / "work"
    got = run_tool("getjobs", "--concurrency", "4", "--wait-time", "1", "--exit-when-idle", "3",
                   "--retry-delay", "0", "--bucket", res.bucket, "--input-prefix", in_prefix,
                   "--output-prefix", out_prefix, work, ".out", res.queue_url, REGION, "cp",
                   env=env, cwd=str(home), timeout=180)
    assert got.returncode == 0, got.stderr[-3000:]
    assert "Traceback" not in got.stderr

    outputs = sorted(list_keys(server.s3, res.bucket, out_prefix))
    assert outputs == sorted(out_prefix + k + ".out" for k in expected)
    for rel, body in expected.items():
        obj = server.s3.get_object(Bucket=res.bucket, Key=out_prefix + rel + ".out")
        assert obj["Body"].read() == body, rel
    assert list_keys(server.s3, res.bucket, "errors/") == []
    pwned = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files if f.startswith("PWNED")]
    assert pwned == [], pwned
    # The worker cleaned up after itself: nothing but (empty) structure is left in WORK_DIR.
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(work) for f in files]
    assert leftovers == [], leftovers
