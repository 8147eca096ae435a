"""The lines jobctl status and sendjobs --wait print for a batch."""

from filejobs.ops.status import BatchStatus
from filejobs.statusview import progress_line, report_lines


def status(**kw):
    base = dict(batch_id="B", total=10, done=4, failed=1, in_progress=2, waiting=3)
    return BatchStatus(**{**base, **kw})


def test_the_progress_line_counts_every_state_and_an_eta_while_unfinished():
    assert progress_line(status(jobs_per_s=0.5, eta_s=10.2)) == (
        "batch B  4/10 done (50%)  1 failed  2 in progress  3 waiting  0.5 jobs/s  ETA 10s")
    assert "ETA" not in progress_line(status(done=9, waiting=0, in_progress=0, eta_s=0.0))


def test_the_report_names_failures_with_the_last_line_of_stderr_and_counts_the_rest():
    failures = [{"input_key": f"in/f{i}", "reason": "exit code 2", "attempts": 3, "stderr_tail": "a\nboom\n"}
                for i in range(3)]
    lines = report_lines(status(failed=3, failures=failures, queue_visible=3, queue_in_flight=2, dlq_visible=3),
                         max_failures=2)
    assert lines[1] == "queue: 3 visible, 2 in flight; dead-letter queue: 3; oldest message: n/a"
    assert lines[2:] == ["failed (3):", "  'in/f0': exit code 2 (attempts: 3) | boom",
                         "  'in/f1': exit code 2 (attempts: 3) | boom", "  … and 1 more (--json for all counts)"]


def test_an_unreadable_failure_is_listed_without_attempts_or_stderr():
    lines = report_lines(status(failures=[{"input_key": "in/a", "reason": "failure record unreadable: x",
                                           "attempts": None, "stderr_tail": None}]))
    assert lines[-1] == "  'in/a': failure record unreadable: x (attempts: None)"
