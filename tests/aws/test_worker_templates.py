"""Command templates through the real worker (real subprocesses, moto's mock_aws): each placeholder is
one argument whatever the file name, the job's context is in the environment, {outdir} is uploaded
file by file, and a command without placeholders keeps the original form byte for byte."""

from __future__ import annotations

import json
import os
import sys

import pytest

from filejobs import message
from filejobs.message import Allowed, Job
from filejobs.runner import CommandRunner
from filejobs.worker import Worker, WorkerConfig
from testing.helpers import RecordingLog, list_keys

#: Each would create a PWNED file if any part of the worker handed it to a shell. moto's mock_aws
#: stores keys with a newline (its server does not), so they are in here.
HOSTILE = ["$(touch PWNED_A).txt", "`touch PWNED_B`", "a; touch PWNED_C", "it's \"quoted\".txt", "-rf", "--help",
           "new\nline.txt", "*.txt", "{output}", "a|touch PWNED_D &", "tab\tand\rcr.txt"]

#: Records its argv (NUL-separated) and its FILEJOBS_* environment beside the output, then copies
#: the input. A program file, not `python -c`, so no brace in it is read as a placeholder.
ARGV_DUMP = """\
import json, os, shutil, sys
args = sys.argv[1:]
src, dst = args[args.index("--in") + 1], args[args.index("--out") + 1]
shutil.copyfile(src, dst)
with open(os.environ["DUMP_DIR"] + "/" + os.environ["FILEJOBS_MESSAGE_ID"], "w") as fh:
    json.dump({"argv": args, "env": {k: v for k, v in os.environ.items() if k.startswith("FILEJOBS_")}}, fh)
"""


def send(clients, res, key: str, data: bytes = b"payload", *, batch_id: str | None = "b1") -> Job:
    etag = clients.s3.put_object(Bucket=res.bucket, Key=key, Body=data)["ETag"]
    job = Job(bucket=res.bucket, input_key=key, input_prefix="input/", output_prefix="output/", batch_id=batch_id,
              etag=etag)
    clients.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(job))
    return job


def run_worker(tmp_path, clients, res, argv, **kw):
    kw.setdefault("allowed", Allowed(bucket=res.bucket, input_prefix="input/", output_prefix="output/"))
    cfg = WorkerConfig(work_dir=str(tmp_path / "work"), extension=kw.pop("extension", ".out"), queue=res.queue_url,
                       exit_when_idle_s=0.05, wait_time_s=0, retry_base_s=0, **kw)
    log = RecordingLog()
    return Worker(cfg, clients, CommandRunner(argv), log=log).run(), log


@pytest.fixture
def dump(tmp_path, monkeypatch):
    folder = tmp_path / "dumps"
    folder.mkdir()
    monkeypatch.setenv("DUMP_DIR", str(folder))
    monkeypatch.chdir(tmp_path)  # a shell's `touch` would land here or in the job folder
    script = tmp_path / "argv_dump.py"
    script.write_text(ARGV_DUMP)
    return folder, [sys.executable, str(script)]


def dumps(folder) -> list[dict]:
    return [json.loads((folder / name).read_text()) for name in sorted(os.listdir(folder))]


def test_hostile_names_are_one_argument_each_and_never_reach_a_shell(tmp_path, mocked, make_resources, dump):
    res = make_resources(mocked)
    folder, program = dump
    for i, name in enumerate(HOSTILE):
        send(mocked, res, f"input/{name}", f"{i}:{name}".encode())
    argv = [*program, "--in", "{input}", "--name={name}", "--key", "{key}", "--out", "{output}", "--", "{stem}",
            "{ext}"]
    stats, _ = run_worker(tmp_path, mocked, res, argv, concurrency=4)
    assert (stats.done, stats.failed, stats.rejected) == (len(HOSTILE), 0, 0)
    seen = {}
    for d in dumps(folder):
        args = d["argv"]
        assert len(args) == 10 and os.path.isabs(args[1]) and os.path.isabs(args[6])
        seen[args[4]] = args
    assert sorted(seen) == sorted(f"input/{n}" for n in HOSTILE)
    for name in HOSTILE:
        args = seen[f"input/{name}"]
        stem, dot, ext = name.rpartition(".")
        stem, ext = (stem, dot + ext) if stem else (name, "")
        assert (args[2], args[8], args[9]) == (f"--name={name}", stem, ext)
        out = mocked.s3.get_object(Bucket=res.bucket, Key=f"output/{name}.out")["Body"].read()
        assert out == f"{HOSTILE.index(name)}:{name}".encode()
    pwned = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files if f.startswith("PWNED")]
    assert pwned == []


def test_the_command_gets_the_jobs_context_in_its_environment(tmp_path, mocked, make_resources, dump, monkeypatch):
    for name in [n for n in os.environ if n.startswith("FILEJOBS_")]:  # only what the worker adds is compared
        monkeypatch.delenv(name)
    res = make_resources(mocked)
    folder, program = dump
    send(mocked, res, "input/dir/a b.txt")
    send(mocked, res, "input/no-batch.txt", batch_id=None)
    run_worker(tmp_path, mocked, res, [*program, "--in", "{input}", "--out", "{output}"])
    envs = sorted((d["env"] for d in dumps(folder)), key=lambda e: e["FILEJOBS_INPUT_KEY"])
    ids = [e.pop("FILEJOBS_MESSAGE_ID") for e in envs]
    assert all(ids) and len(set(ids)) == 2
    assert envs == [
        {"FILEJOBS_BUCKET": res.bucket, "FILEJOBS_INPUT_KEY": "input/dir/a b.txt",
         "FILEJOBS_OUTPUT_KEY": "output/dir/a b.txt.out", "FILEJOBS_BATCH_ID": "b1", "FILEJOBS_ATTEMPT": "1"},
        {"FILEJOBS_BUCKET": res.bucket, "FILEJOBS_INPUT_KEY": "input/no-batch.txt",
         "FILEJOBS_OUTPUT_KEY": "output/no-batch.txt.out", "FILEJOBS_BATCH_ID": "", "FILEJOBS_ATTEMPT": "1"}]


def test_outdir_is_a_private_empty_directory_whose_files_are_all_uploaded(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/book.txt", b"one\ntwo\n")
    script = tmp_path / "split.sh"
    # Writes one page per line, and fails unless it is given an empty directory it alone can use.
    script.write_text('#!/bin/sh\nset -e\n[ -z "$(ls -A "$2")" ] && [ "$(stat -c %a "$2")" = 700 ]\n'
                      'mkdir "$2/pages"; n=0\nwhile read -r line; do n=$((n+1)); echo "$line" > "$2/pages/$n.txt";'
                      ' done < "$1"\n')
    script.chmod(0o755)
    stats, _ = run_worker(tmp_path, mocked, res, [str(script), "{input}", "{outdir}"], extension="")
    assert stats.done == 1
    assert sorted(list_keys(mocked.s3, res.bucket, "output/")) == ["output/book.txt/pages/1.txt",
                                                                     "output/book.txt/pages/2.txt"]
    assert mocked.s3.get_object(Bucket=res.bucket, Key="output/book.txt/pages/2.txt")["Body"].read() == b"two\n"


def test_an_outdir_left_empty_fails_the_job_with_its_reason(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    send(mocked, res, "input/a.txt")
    stats, _ = run_worker(tmp_path, mocked, res, ["true", "{input}", "{outdir}"])
    assert stats.failed == 1
    record = json.loads(mocked.s3.get_object(Bucket=res.bucket, Key="errors/b1/a.txt.json")["Body"].read())
    assert record["reason"] == "the command wrote no file in its output directory"


def test_a_command_without_placeholders_keeps_the_original_form_byte_for_byte(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/a.txt", b"x")
    seen = tmp_path / "argv.json"
    script = tmp_path / "show.py"
    script.write_text(f"import json, shutil, sys\njson.dump(sys.argv[1:], open({str(seen)!r}, 'w'))\n"
                      "shutil.copyfile(sys.argv[-2], sys.argv[-1])\n")
    stats, _ = run_worker(tmp_path, mocked, res, [sys.executable, str(script), "{}", "{{", "}}", "50%"])
    assert stats.done == 1
    args = json.loads(seen.read_text())
    assert args[:4] == ["{}", "{{", "}}", "50%"] and len(args) == 6
    assert args[4].endswith("/in/a.txt") and args[5].endswith("/out/a.txt.out")


def test_a_name_that_would_be_read_as_an_option_fails_its_job_without_running_the_command(
        tmp_path, mocked, make_resources, dump):
    res = make_resources(mocked)
    folder, program = dump
    send(mocked, res, "input/-rf")
    send(mocked, res, "input/plain.txt")
    argv = [*program, "--in", "{input}", "--out", "{output}", "{stem}"]
    stats, log = run_worker(tmp_path, mocked, res, argv)
    assert stats.done == 1 and stats.failed >= 1
    assert [d["env"]["FILEJOBS_INPUT_KEY"] for d in dumps(folder)] == ["input/plain.txt"]
    failed = [e for e in log.events if e[0] == "failed"]
    assert "would be read as an option" in failed[0][1]["reason"]
