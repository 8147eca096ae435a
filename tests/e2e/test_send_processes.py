"""sendjobs with upload processes (--processes N > 1), against a moto server: the upload processes
are real child processes, so these run the library or the CLI over real HTTP (mock_aws cannot
reach another process). What one process guarantees must hold with several: every file once,
one job per file and only after its upload, the journal and resume, Ctrl-C, one line per failure."""

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from filejobs import aws, message
from filejobs.ops import resources
from filejobs.send import FatalSendError, SendConfig, Sender
from testing.helpers import REGION, ROOT, drain_queue, run_tool, stalling, unique, vanish_during_walk

pytestmark = pytest.mark.e2e


@pytest.fixture
def res(server):
    return resources.create_all(server.s3, server.sqs, bucket=unique("b"), queue=unique("q"), region=REGION,
                                settings=resources.QueueSettings(visibility_timeout_s=30, max_receive_count=3))


def files(tmp_path, n):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n):
        (data / f"f{i:04d}.txt").write_text(f"file {i}")
    return data


def config(tmp_path, res, data, **kw):
    settings = {"bucket": res.bucket, "queue": res.queue_url, "processes": 2, "concurrency": 8, "processes_after": 0,
                **kw}
    return SendConfig(directory=str(data), input_prefix="input/", output_prefix="output/",
                      state_dir=str(tmp_path / "state"), **settings)


def jobs_per_key(server, url):
    counts = {}
    for m in drain_queue(server.sqs, url, max_rounds=200):
        job = message.decode(m["Body"])
        counts[job.input_key] = counts.get(job.input_key, 0) + 1
    return counts


def upload_children():
    return [p for p in psutil.Process().children(recursive=True) if "filejobs.send.uploader" in " ".join(p.cmdline())]


def test_every_file_goes_up_once_with_one_job_and_a_rerun_sends_nothing(server, res, tmp_path):
    data = files(tmp_path, 60)
    first = Sender(config(tmp_path, res, data), server).run()
    assert (first.files_sent, first.files_uploaded, first.files_failed, first.ok) == (60, 60, 0, True)
    again = Sender(config(tmp_path, res, data), server).run()
    assert (again.files_sent, again.files_skipped) == (0, 60)
    counts = jobs_per_key(server, res.queue_url)
    assert sorted(counts) == [f"input/f{i:04d}.txt" for i in range(60)] and set(counts.values()) == {1}
    for job_key in ("input/f0000.txt", "input/f0059.txt"):
        assert server.s3.get_object(Bucket=res.bucket, Key=job_key)["Body"].read() == f"file {int(job_key[7:11])}".encode()
    assert upload_children() == []  # the upload processes are gone once the run returns


def test_a_file_that_vanished_is_named_once_and_the_rest_is_sent(server, res, tmp_path, monkeypatch):
    data = files(tmp_path, 30)
    vanish_during_walk(monkeypatch, "f0007.txt")
    summary = Sender(config(tmp_path, res, data), server).run()
    assert (summary.files_sent, summary.files_failed) == (29, 1)
    assert [(f.rel, f.reason.split(":")[0]) for f in summary.failures] == [("f0007.txt", "cannot read")]
    assert "input/f0007.txt" not in jobs_per_key(server, res.queue_url)


def test_a_missing_bucket_seen_in_an_upload_process_stops_the_run_with_one_line(server, res, tmp_path):
    data = files(tmp_path, 20)
    cfg = config(tmp_path, res, data, bucket="no-such-bucket-procs")
    with pytest.raises(FatalSendError) as err:
        Sender(cfg, server).run()
    assert str(err.value) == "bucket no-such-bucket-procs does not exist"
    assert drain_queue(server.sqs, res.queue_url) == []


class StopAfter:
    """A progress display that asks the run to stop (as Ctrl-C does) once ``files`` were sent."""

    def __init__(self, files):
        self.files, self.seen, self.sender = files, 0, None

    def add(self, files=0, nbytes=0):
        self.seen += files
        if self.seen >= self.files:
            self.sender.stop()


@pytest.mark.slow
def test_stopping_mid_run_records_what_was_sent_and_a_rerun_sends_each_remaining_file_once(server, res, tmp_path):
    data = files(tmp_path, 150)
    progress = StopAfter(40)
    progress.sender = Sender(config(tmp_path, res, data, concurrency=4), server, progress=progress)
    first = progress.sender.run()
    assert first.interrupted and 40 <= first.files_sent < 150
    second = Sender(config(tmp_path, res, data), server).run()
    assert second.ok and second.files_skipped == first.files_sent
    counts = jobs_per_key(server, res.queue_url)
    assert len(counts) == 150 and set(counts.values()) == {1}  # a clean stop leaves no duplicate


@pytest.mark.slow
def test_an_upload_process_that_dies_stops_the_run_and_a_rerun_completes_it(server, res, tmp_path):
    data = files(tmp_path, 150)
    killed = []
    with stalling(server.env, after_requests=40) as (proxy, _):
        held_back = aws.make_clients(aws.Target(region=REGION, endpoint_url=proxy.url))
        sender = Sender(config(tmp_path, res, data, concurrency=2), held_back)

        def kill_one_child():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (proxy.held and upload_children()):
                time.sleep(0.02)
            children = upload_children()
            if children:
                children[0].kill()
                killed.append(children[0].pid)
            proxy.release()

        killer = threading.Thread(target=kill_one_child)
        killer.start()
        with pytest.raises(FatalSendError, match="an upload process ended unexpectedly"):
            sender.run()
        killer.join()
    assert killed
    rerun = Sender(config(tmp_path, res, data), server).run()
    assert rerun.ok
    counts = jobs_per_key(server, res.queue_url)
    assert sorted(counts) == [f"input/f{i:04d}.txt" for i in range(150)]


def stop_when_uploading_in_processes(server, argv, *, stop, after_requests=300, **popen):
    """Run sendjobs, and once its upload processes run (after the first 256 files) and the endpoint
    holds its requests, ``stop(process)``; the endpoint then answers again. The children seen."""
    with stalling(server.env, after_requests=after_requests) as (proxy, env):
        first = subprocess.Popen(argv, env=env, **popen)
        children = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(children) < 2 or not proxy.held):
            children = psutil.Process(first.pid).children()
            time.sleep(0.02)
        assert len(children) == 2 and proxy.held, "sendjobs never held requests from its two upload processes"
        stop(first)
        time.sleep(0.3)  # the signal is handled before the held requests are let through
    return first, children


@pytest.mark.slow
def test_ctrl_c_to_sendjobs_stops_its_upload_processes_and_a_rerun_sends_each_file_once(server, res, tmp_path):
    data = files(tmp_path, 400)  # the upload processes start after the first 256 files
    argv = [sys.executable, os.path.join(ROOT, "sendjobs.py"), "--processes", "2", "--concurrency", "4", data,
            res.bucket, "input/", "output/", res.queue_url, REGION]
    first, children = stop_when_uploading_in_processes(server, argv, stop=lambda p: p.send_signal(signal.SIGINT),
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130 and "Traceback" not in err, err
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    second = run_tool("sendjobs", "--processes", "2", data, res.bucket, "input/", "output/", res.queue_url, REGION,
                      env=server.env)
    assert second.returncode == 0, second.stderr
    counts = jobs_per_key(server, res.queue_url)
    assert len(counts) == 400 and set(counts.values()) == {1}


@pytest.mark.slow
def test_upload_processes_end_when_sendjobs_is_killed(server, res, tmp_path):
    data = files(tmp_path, 400)
    argv = [sys.executable, os.path.join(ROOT, "sendjobs.py"), "--processes", "2", "--concurrency", "2", data,
            res.bucket, "input/", "output/", res.queue_url, REGION]
    first, children = stop_when_uploading_in_processes(server, argv, stop=lambda p: p.kill(),
                                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [] and len(gone) == 2


class CountChildren:
    """A progress display that notes how many upload processes run as files are sent."""

    def __init__(self):
        self.seen = set()

    def add(self, files=0, nbytes=0):
        self.seen.add(len(upload_children()))


def test_a_run_of_few_files_uploads_in_its_own_threads_and_starts_no_process(server, res, tmp_path):
    data = files(tmp_path, 30)
    progress = CountChildren()
    summary = Sender(config(tmp_path, res, data, processes_after=256), server, progress=progress).run()
    assert summary.ok and summary.files_sent == 30
    assert progress.seen == {0}
