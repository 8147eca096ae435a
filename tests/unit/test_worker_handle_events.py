"""handle(lease) for S3 event messages: one job per record, one outcome per message."""

from __future__ import annotations

import json

from filejobs.message import Allowed
from filejobs.runner import RunResult
from filejobs.worker import Handler, Kind
from test_s3event import record, sns
from test_worker_handle import BUCKET, Runner
from worker_fakes import FakeS3, Parts, admit, config

EVENTS = Allowed(bucket=BUCKET, input_prefix="input/", output_prefix="output/", s3_events=True)


class Events:
    """A handler in --s3-events mode over a fake S3 holding ``files``, and one event message."""

    def __init__(self, tmp_path, files=("a.txt",), *, runner=None, allowed=EVENTS, attempt=1):
        self.p = Parts()
        self.s3 = FakeS3()
        self.runner = runner or Runner()
        self.etags = {name: self.s3.add(BUCKET, f"input/{name}", name.encode()) for name in files}
        work = tmp_path / "work"
        work.mkdir()
        self.handler = Handler(config(work, allowed=allowed), self.s3, self.runner, self.p.inflight,
                               log=self.p.log, clock=self.p.clock)
        self.attempt = attempt

    def event(self, *names, **kw) -> dict:
        return {"Records": [record(f"input/{n}", bucket=BUCKET, etag=self.etags.get(n, '"x"').strip('"'), **kw)
                            for n in names]}

    def handle(self, data):
        (self.lease,) = admit(self.p.inflight, json.dumps(data), attempt=self.attempt)
        return self.handler.handle(self.lease)

    def outputs(self):
        return {k: o["data"] for (_, k), o in self.s3.objects.items() if k.startswith("output/")}


def test_an_event_is_processed_like_a_job_with_its_etag_as_the_version(tmp_path):
    e = Events(tmp_path)
    outcome = e.handle(e.event("a.txt"))
    assert (outcome.kind, outcome.output) == (Kind.DONE, "output/a.txt.out")
    assert e.outputs() == {"output/a.txt.out": b"A.TXT"}
    get = e.s3.calls[0][1]
    assert e.s3.ops() == ["GetObject", "PutObject"] and get["Key"] == "input/a.txt"
    assert e.lease.job.etag == e.etags["a.txt"] and e.lease.job.batch_id is None


def test_an_sns_wrapped_event_is_processed_too(tmp_path):
    e = Events(tmp_path)
    assert e.handle(sns(e.event("a.txt"))).kind is Kind.DONE


def test_an_event_for_an_overwritten_object_is_stale(tmp_path):
    e = Events(tmp_path)
    e.etags["a.txt"] = '"an-older-upload"'
    assert e.handle(e.event("a.txt")).kind is Kind.STALE and e.runner.runs == []


def test_a_test_event_is_ignored_without_any_request(tmp_path):
    e = Events(tmp_path)
    outcome = e.handle({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET})
    assert outcome.kind is Kind.IGNORED and "s3:TestEvent" in outcome.reason
    assert e.s3.calls == [] and e.runner.runs == []


def test_removals_and_folders_are_ignored_and_named_when_beside_a_job(tmp_path):
    e = Events(tmp_path)
    assert e.handle(e.event("gone.txt", name="ObjectRemoved:Delete")).kind is Kind.IGNORED
    mixed = e.event("a.txt")
    mixed["Records"].append(record("input/folder/", bucket=BUCKET, size=0))
    assert e.handle(mixed).kind is Kind.DONE
    assert "folder marker" in e.p.log.of("ignored")[0]["reason"]


def test_an_event_for_another_bucket_is_rejected_without_touching_s3(tmp_path):
    e = Events(tmp_path)
    outcome = e.handle({"Records": [record("input/a.txt", bucket="someone-else")]})
    assert outcome.kind is Kind.REJECTED and "not the configured bucket" in outcome.reason
    assert e.s3.calls == [] and e.runner.runs == []


def test_without_s3_events_an_event_is_rejected_with_the_option_to_use(tmp_path):
    e = Events(tmp_path, allowed=Allowed(bucket=BUCKET, input_prefix="input/", output_prefix="output/"))
    outcome = e.handle(e.event("a.txt"))
    assert outcome.kind is Kind.REJECTED and "--s3-events" in outcome.reason and e.s3.calls == []


def test_several_records_are_each_processed_and_the_message_is_done_once(tmp_path):
    e = Events(tmp_path, ("a.txt", "b.txt", "c.txt"))
    outcome = e.handle(e.event("a.txt", "b.txt", "c.txt"))
    assert outcome.kind is Kind.DONE
    assert e.outputs() == {f"output/{n}.out": n.upper().encode() for n in ("a.txt", "b.txt", "c.txt")}
    assert [r["result"] for r in e.p.log.of("record")] == ["done", "done", "done"]


def test_one_failing_record_fails_the_message_and_its_retry_skips_the_done_ones(tmp_path):
    def fail_b(input_path, output_path):
        if not input_path.endswith("b.txt"):
            with open(output_path, "w") as fh:
                fh.write("ok")
    runner = Runner(action=fail_b)
    e = Events(tmp_path, ("a.txt", "b.txt", "c.txt"), runner=runner)
    outcome = e.handle(e.event("a.txt", "b.txt", "c.txt"))
    assert outcome.kind is Kind.FAILED
    assert outcome.reason == "1 of 3 jobs failed, first 'input/b.txt': the command exited 0 but wrote no output"
    assert e.lease.key == "input/b.txt"  # the failure record names the job that failed
    assert sorted(e.outputs()) == ["output/a.txt.out", "output/c.txt.out"]

    runner.action = None  # fixed; the message comes back
    e.attempt, runner.runs = 2, []
    assert e.handle(e.event("a.txt", "b.txt", "c.txt")).kind is Kind.DONE
    assert [r["input"].rsplit("/", 1)[1] for r in runner.runs] == ["b.txt"]
    assert [r["result"] for r in e.p.log.of("record")[3:]] == ["duplicate", "done", "duplicate"]


def test_a_message_of_several_records_holds_its_slot_until_its_last_command_exits(tmp_path):
    e = Events(tmp_path, ("a.txt", "b.txt"))
    free = []
    e.s3.on_put = lambda: free.append(e.p.inflight.free_slots())
    e.handle(e.event("a.txt", "b.txt"))
    assert free == [0, 1]


def test_a_shutdown_between_records_cancels_the_message(tmp_path):
    e = Events(tmp_path, ("a.txt", "b.txt"))

    def stop_after_first(input_path, output_path):
        open(output_path, "w").close()
        e.lease.cancel.set()
    e.runner.action = stop_after_first
    assert e.handle(e.event("a.txt", "b.txt")).kind is Kind.CANCELLED
    assert len(e.runner.runs) == 1


def test_a_failed_command_in_a_single_record_message_keeps_its_own_reason(tmp_path):
    e = Events(tmp_path, runner=Runner(RunResult(False, exit_code=2, reason="exit code 2", stderr_tail="no")))
    outcome = e.handle(e.event("a.txt"))
    assert (outcome.kind, outcome.reason, outcome.exit_code) == (Kind.FAILED, "exit code 2", 2)
