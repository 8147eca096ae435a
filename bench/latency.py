"""A latency model for botocore clients: a fixed delay before every HTTP request.

Real AWS round trips cost tens of milliseconds; local endpoints answer in a few. Sleeping in the
``before-send`` event (which fires once per HTTP attempt, retries included, in the thread that
makes the request) adds that round trip without using CPU, so a benchmark can show how well a
tool's concurrency hides latency. The handler returns ``None``, so the request then goes out as
usual.
"""

from __future__ import annotations

import time


class Delay:
    def __init__(self, seconds: float):
        self.seconds = float(seconds)

    def __call__(self, **_kwargs):
        if self.seconds > 0:
            time.sleep(self.seconds)
        return None  # let botocore send the request


def add_delay(client, seconds: float) -> None:
    """Make every request of ``client`` take ``seconds`` longer."""
    if seconds > 0:
        client.meta.events.register("before-send.*.*", Delay(seconds))
