"""One event log for both tools: text, json and plain lines, and embedded-metric-format metrics."""

from __future__ import annotations

import io
import json

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
