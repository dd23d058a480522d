"""Benchmark tasks: no work, a 10 ms wait, and a timestamp for pick-up latency."""

import os
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


_STEADY_LOG: dict[int, int] = {}  # pid -> file descriptor


@background
def steady(i: int) -> None:
    """Note when call ``i`` started, for the steady scenario's pick-up latencies:
    one line per run in this process's file under BENCH_STEADY_DIR."""
    started = time.time()
    fd = _STEADY_LOG.get(os.getpid())
    if fd is None:
        path = os.path.join(os.environ["BENCH_STEADY_DIR"], f"worker-{os.getpid()}.txt")
        fd = _STEADY_LOG[os.getpid()] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(fd, f"{i} {started}\n".encode())


@background(concurrency_limit=1, concurrency_key=lambda i=0: f"key-{i % 100}")
def noop_limited(i: int = 0) -> None:
    """A no-op with one run at a time per key, over 100 keys."""


@background(rate_limit="200/s")
def noop_rated(i: int = 0) -> None:
    """A no-op that may start at most 200 times a second."""


@background(rate_limit="1000/s")
def noop_rated_1000(i: int = 0) -> None:
    """A no-op that may start at most 1,000 times a second."""


if os.environ.get("BENCH_ASYNC"):
    # Only the async scenarios' workers know the async tasks: the other
    # scenarios measure a project without any, as they always did.
    from benchmarks.benchapp.async_tasks import *  # noqa: F403
