"""Benchmark tasks: no work, a 10 ms wait, and a timestamp for pick-up latency."""

import time

from background_task import background


@background
def noop(i: int = 0) -> None:
    pass


@background
def sleep_10ms(i: int = 0) -> None:
    time.sleep(0.01)


@background
def stamp(sent: float) -> float:
    """Return the time.time() at which this started (``sent`` only tells probes apart)."""
    return time.time()
