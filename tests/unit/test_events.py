"""One event log for both tools: text, json and plain lines, and embedded-metric-format metrics."""

from __future__ import annotations

import io
import json
import threading

from filejobs.events import EventLog


def make(**kw):
    out = io.StringIO()
    return EventLog(stream=out, wall_clock=lambda: 1764806400.0, **kw), out


def test_text_lines_are_timestamped_and_quote_names():
    log, out = make()
    log("done", key="in/a b.txt", attempt=1, duration_s=0.25, reason=None)
    assert out.getvalue() == "2025-12-04T00:00:00Z done key='in/a b.txt' attempt=1 duration_s=0.250\n"


def test_a_newline_in_a_name_cannot_forge_a_second_line():
    log, out = make(fmt="plain")
    log("failed", file="x\nfailed: y", reason="cannot read")
    assert out.getvalue().count("\n") == 1 and "\\n" in out.getvalue()


def test_json_lines_drop_empty_fields():
    log, out = make(fmt="json")
    log("received", key="in/ü", batch=None)
    assert json.loads(out.getvalue()) == {"ts": "2025-12-04T00:00:00.000+00:00", "event": "received", "key": "in/ü"}


def test_only_shows_the_chosen_events():
    log, out = make(fmt="plain", only={"failed"})
    log("warning", reason="skipped a link")
    log("failed", file="a", reason="gone")
    assert out.getvalue() == "failed: file='a' reason=gone\n"


def test_metrics_are_off_unless_asked_for_and_then_go_to_their_own_stream():
    metrics = io.StringIO()
    off, _ = make(metrics_stream=metrics)
    off.metric("JobsDone", duration_s=1.0)
    assert metrics.getvalue() == ""
    on, out = make(metrics=True, metrics_stream=metrics, dimensions={"Queue": "q"})
    on.metric("JobsDone", duration_s=1.5)
    record = json.loads(metrics.getvalue())
    assert record["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Queue"]]
    assert record["JobsDone"] == 1 and record["JobDuration"] == 1.5 and record["Queue"] == "q"
    assert out.getvalue() == ""


class Recorded(io.StringIO):
    """A stream that counts its writes and says when it was flushed."""

    def __init__(self):
        super().__init__()
        self.writes = 0
        self.flushed = threading.Event()

    def write(self, text):
        self.writes += 1
        return super().write(text)

    def flush(self):
        self.flushed.set()


def test_buffered_lines_are_written_together_in_order_and_at_once_after_close():
    err, metrics = Recorded(), Recorded()
    log = EventLog(fmt="plain", stream=err, metrics=True, metrics_stream=metrics, flush_s=3600)
    for n in range(5):
        log("done", key=f"k{n}")
    log.metric("JobsDone")
    assert err.getvalue() == "" and metrics.getvalue() == ""  # an hour's delay: nothing written yet
    log.close()
    assert err.getvalue() == "".join(f"done: key='k{n}'\n" for n in range(5)) and err.writes == 1
    assert json.loads(metrics.getvalue())["JobsDone"] == 1
    log("summary", done=5)
    assert err.getvalue().endswith("summary: done=5\n")


def test_a_buffered_line_is_written_within_the_delay_with_no_other_line_after_it():
    err = Recorded()
    log = EventLog(fmt="plain", stream=err, flush_s=0.01)
    log("started", key="long-job")
    assert err.flushed.wait(10), "the line was never written"
    assert err.getvalue() == "started: key='long-job'\n"
    log.close()


def test_the_text_timestamp_follows_the_clock_across_seconds():
    now = [1764806400.0]
    out = io.StringIO()
    log = EventLog(stream=out, wall_clock=lambda: now[0])
    log("a")
    now[0] += 61.5
    log("b")
    assert out.getvalue() == "2025-12-04T00:00:00Z a\n2025-12-04T00:01:01Z b\n"


class Broken(io.StringIO):
    def write(self, text):
        raise BrokenPipeError("the reader went away")


def test_a_buffered_log_whose_stream_broke_drops_its_lines_and_keeps_going():
    log = EventLog(fmt="plain", stream=Broken(), flush_s=3600)
    log("done", key="a")
    log.close()  # no exception: the worker does not fail its jobs over a lost log line
    log("done", key="b")
