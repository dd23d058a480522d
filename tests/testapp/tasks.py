"""Fixture tasks used across the test suite."""

from __future__ import annotations

import asyncio
import os
import time

from django.utils import timezone

from background_task import background, current_task
from background_task.exceptions import InvalidTaskError
from tests.testapp.models import Execution


def _record(name: str, key: str = "") -> Execution:
    return Execution.objects.create(
        task_name=name, key=key, worker_pid=os.getpid(), started_at=timezone.now()
    )


@background
def noop() -> None:
    """Do nothing."""


@background(schedule=60)
def add(a: int, b: int) -> int:
    return a + b


@background(queue="records")
def record(key: str = "") -> str:
    """Store one Execution row per run."""
    execution = _record("record", key)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["finished_at"])
    return key


@background
def sleep_for(seconds: float, key: str = "") -> None:
    execution = _record("sleep_for", key)
    time.sleep(seconds)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["finished_at"])


@background
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@background
def mistyped(count: int = 1) -> str:
    """Its arguments fit; its own code raises TypeError."""
    return "x" + count  # type: ignore[operator]


@background
def fail_invalid() -> None:
    raise InvalidTaskError("not worth retrying")


@background
def exit_inside() -> None:
    raise SystemExit(3)


@background(name="custom.name", max_attempts=2, timeout=30, priority=5, verbose_name="Custom")
def custom() -> None:
    pass


@background
def chatty(text: str) -> None:
    """Print and flush, as code under --log-std does."""
    import sys

    print(text)
    sys.stdout.flush()
    print(f"err:{text}", file=sys.stderr)


@background(timeout=1, max_attempts=2)
def overrun(seconds: float, key: str = "") -> None:
    """Sleep past its one-second hard time limit."""
    execution = _record("overrun", key)
    time.sleep(seconds)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["finished_at"])


@background(max_attempts=2)
def crash(code: int = 1) -> None:
    """Kill the worker process the way a segfault or an OOM kill would."""
    _record("crash")
    os._exit(code)


@background(on_worker_lost="fail")
def at_most_once(seconds: float, key: str = "") -> None:
    execution = _record("at_most_once", key)
    time.sleep(seconds)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["finished_at"])


@background(queue="chaos")
def chaos_step(key: str, millis: int) -> None:
    """One unit of chaos-suite work: record the execution, sleep, record its end."""
    execution = _record("chaos", key)
    time.sleep(millis / 1000)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["finished_at"])


@background(queue="chaos-unique", unique=True)
def chaos_unique(key: str) -> None:
    """A unique task the chaos suite calls again and again while workers die."""
    execution = _record("chaos_unique", key)
    time.sleep(0.01)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["finished_at"])


@background
def until_cancelled(key: str = "", limit: float = 30.0) -> str:
    """Work in small steps until asked to stop; stop by raising TaskCancelled."""
    from background_task import TaskCancelled, current_task

    _record("until_cancelled", key)
    current = current_task()
    assert current is not None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if current.cancel_requested:
            raise TaskCancelled("asked to stop")
        time.sleep(0.05)
    return "finished"


@background(max_attempts=3)
def asks_retry(delay: float | None = None) -> None:
    """Ask for another attempt from inside."""
    from background_task import Retry

    raise Retry(delay=delay, reason="not ready yet")


@background(ttl=60)
def returns_object() -> object:
    """A task that keeps its result but returns something JSON cannot hold."""
    return object()


@background
def returns_object_legacy() -> object:
    """The same, for a task that does not keep results (1.2.8 behaviour)."""
    return object()


@background(ttl=0)
def short_lived(value: int) -> int:
    return value


@background(ttl=60)
def describe(execution: Execution, when: object, amounts: object) -> list[object]:
    """Takes a model instance and richer values; returns what it got, as JSON."""
    return [execution.key, type(when).__name__, sorted(str(a) for a in amounts)]


# -- async def tasks ---------------------------------------------------------------


@background(ttl=60)
async def async_record(key: str = "") -> str:
    """Store one Execution row through Django's async ORM, after an await."""
    await asyncio.sleep(0.01)
    await Execution.objects.acreate(
        task_name="async_record", key=key, worker_pid=os.getpid(), started_at=timezone.now()
    )
    return key


@background
async def async_sync_orm() -> int:
    """Calls the sync ORM from async code: Django refuses."""
    return Execution.objects.count()


@background(ttl=60)
async def async_current() -> list[object]:
    """What a running async task knows about itself."""
    current = current_task()
    await asyncio.sleep(0)
    return [current.task_id, current.attempt] if current is not None else []


@background(ttl=60)
async def async_overlap(key: str, seconds: float = 0.3) -> str:
    """Awaits ``seconds``, then records when it started and ended (to count
    how many ran at once)."""
    started = timezone.now()
    await asyncio.sleep(seconds)
    await Execution.objects.acreate(
        task_name="async_overlap",
        key=key,
        worker_pid=os.getpid(),
        started_at=started,
        finished_at=timezone.now(),
    )
    return key


@background(ttl=60)
async def async_sleeper(key: str, seconds: float = 60.0) -> str:
    """Records that it started, sleeps; when cancelled, records a clean-up first."""
    await Execution.objects.acreate(task_name="async_sleeper", key=f"started:{key}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await Execution.objects.acreate(task_name="async_sleeper", key=f"cleanup:{key}")
        raise
    await Execution.objects.acreate(task_name="async_sleeper", key=f"finished:{key}")
    return key


@background
async def async_blocking(seconds: float) -> None:
    """A mistake: blocks its event loop with a sync sleep."""
    time.sleep(seconds)


@background(ttl=60)
async def async_cancel_flag() -> bool:
    """Reads ``current_task().cancel_requested`` in async code (no sync query)."""
    current = current_task()
    assert current is not None
    await asyncio.sleep(0)
    return current.cancel_requested


# -- unique tasks --------------------------------------------------------------------


@background(unique=True)
def unique_record(key: str = "") -> str:
    """A unique task: one waiting run per ``key``."""
    _record("unique_record", key)
    return key


@background(unique=True, unique_until="finish")
def unique_until_finish(seconds: float = 0.0, key: str = "") -> None:
    """A unique task whose key is held until the run finished."""
    _record("unique_until_finish", key)
    time.sleep(seconds)


# -- concurrency limits ----------------------------------------------------------------


def _account(key: str, seconds: float = 0.0) -> str:
    return "account-" + key.split(":")[0]


@background(concurrency_limit=2, concurrency_key=_account)
def limited(key: str, seconds: float = 0.0) -> None:
    """At most two runs per account (the part of ``key`` before ':') at once;
    records when each run started and ended."""
    execution = _record("limited", key)
    time.sleep(seconds)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["finished_at"])


@background(concurrency_limit=1, max_attempts=2)
def limited_failing(key: str = "") -> None:
    """One run at a time; fails every attempt."""
    _record("limited_failing", key)
    raise RuntimeError("limited and failing")


# -- rate limits -------------------------------------------------------------------------


@background(rate_limit="5/s", rate_key=lambda key: "rate-" + key.split(":")[0])
def rate_limited(key: str) -> None:
    """At most five starts a second per account (the part of ``key`` before ':')."""
    _record("rate_limited", key)


# -- partitions (tests/test_partition.py) --------------------------------------------


@background(retry_delay=0, max_attempts=5)
def partitioned_run(key: str, seconds: float) -> None:
    """A long run that notes its start, a tick every 50 ms and its end in a
    file of its own under BGTASK_RUN_LOG (never in the database, which a
    partitioned worker cannot reach): when each run was alive."""
    path = os.path.join(os.environ["BGTASK_RUN_LOG"], f"{key}-{os.getpid()}-{time.time()}.txt")
    with open(path, "a", buffering=1) as log:
        log.write(f"start {time.time()}\n")
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            time.sleep(0.05)
            log.write(f"tick {time.time()}\n")
        log.write(f"end {time.time()}\n")


# -- progress and metadata ----------------------------------------------------------


def _wait_for_file(path: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


@background(ttl=60)
def progress_gate(path: str) -> str:
    """Reports half its work, waits for ``path`` to exist, then reports the rest."""
    current = current_task()
    assert current is not None
    current.set_progress(5, 10, "half way")
    current.update_meta(stage="waiting", path=path)
    _wait_for_file(path)
    current.set_progress(10, 10, "all done")
    current.update_meta(stage="finished")
    return "ok"


@background(ttl=60)
def progress_loop(calls: int) -> int:
    """Reports progress ``calls`` times in a tight loop."""
    current = current_task()
    assert current is not None
    for number in range(1, calls + 1):
        current.set_progress(number, calls)
    return calls


@background(ttl=60, max_attempts=2)
def progress_then_fail(steps: int) -> None:
    """Reports ``steps`` of progress and metadata, then fails."""
    current = current_task()
    assert current is not None
    current.set_progress(steps, steps * 2, f"failed after {steps}")
    current.update_meta(attempt=current.attempt)
    raise RuntimeError("failing on purpose")


@background(ttl=60)
async def async_progress_gate(path: str) -> str:
    """``progress_gate`` as a coroutine: reports never wait for the database."""
    current = current_task()
    assert current is not None
    current.set_progress(1, 4, "started")
    current.update_meta(kind="async")
    while not os.path.exists(path):
        await asyncio.sleep(0.02)
    current.set_progress(4, 4, "finished")
    return "ok"


# -- tracing ------------------------------------------------------------------------


@background(ttl=60)
def traced_inner(key: str = "") -> str:
    """Starts a span of its own: a child of its run's span."""
    from opentelemetry import trace

    with trace.get_tracer("tests").start_as_current_span("inner work"):
        return key


@background(ttl=60)
async def async_traced_inner(key: str = "") -> str:
    """``traced_inner`` as a coroutine on the worker's event loop."""
    from opentelemetry import trace

    with trace.get_tracer("tests").start_as_current_span("inner async work"):
        await asyncio.sleep(0)
        return key


# -- atomic tasks -------------------------------------------------------------------


@background(atomic=True, max_attempts=1)
def atomic_record(key: str, fail: bool = False) -> str:
    """Records itself, then fails if asked: an atomic task's writes go with its outcome."""
    _record("atomic_record", key)
    if fail:
        raise RuntimeError("failing after a write")
    return key


@background(atomic=True, max_attempts=1)
def atomic_stolen(key: str) -> str:
    """Records itself, then another connection takes its claim away (as a
    worker that recovered it would): its success cannot be recorded."""
    import threading

    from background_task.models import Task

    _record("atomic_stolen", key)
    current = current_task()
    assert current is not None
    thread = threading.Thread(
        target=lambda: Task.objects.filter(pk=current.task.pk).update(claim_token="stolen")
    )
    thread.start()
    thread.join()
    return key


@background(atomic=True, timeout=1, max_attempts=1)
def atomic_overrun(key: str) -> None:
    """Records itself, then overruns its time limit: its process is killed."""
    _record("atomic_overrun", key)
    time.sleep(30)


@background(queue="atomic", atomic=True, retry_delay=0, max_attempts=50)
def atomic_increment(name: str, millis: int = 5) -> None:
    """Adds one to a counter, then holds its transaction ``millis`` ms (a kill
    lands inside it often)."""
    from django.db.models import F

    from tests.testapp.models import Counter

    Counter.objects.filter(name=name).update(value=F("value") + 1)
    time.sleep(millis / 1000)


# -- workflows ----------------------------------------------------------------------


@background(ttl=60, max_attempts=1)
def wf_add(x: int, y: int) -> int:
    """Adds, and records the call."""
    _record("wf_add", f"{x}+{y}")
    return x + y


@background(ttl=60, max_attempts=1)
def wf_sum(values: list[int], extra: int = 0) -> int:
    """A group's ``then``: the sum of its members' results."""
    _record("wf_sum", ",".join(str(value) for value in values))
    return sum(values) + extra


@background(ttl=60, max_attempts=1)
def wf_fail(x: int) -> None:
    """A step that fails for good."""
    _record("wf_fail", str(x))
    raise ValueError(f"step {x} failed")


@background(ttl=60, max_attempts=1)
def wf_failure_handler(failure: dict) -> str:
    """An ``on_failure`` step: records which step failed and why."""
    _record("wf_failure_handler", f"{failure['task_name']}|{failure['message']}")
    return failure["task_id"]


@background(queue="wf-chaos", retry_delay=0, max_attempts=50, ttl=3600)
def wf_step(key: str, millis: int = 2) -> str:
    """A chaos workflow's step: records itself (each run) and returns its key."""
    _record("wf_step", key)
    time.sleep(millis / 1000)
    return key


@background(queue="wf-chaos", retry_delay=0, max_attempts=50, ttl=3600, atomic=True)
def wf_callback(results: object, key: str) -> str:
    """A chaos workflow's callback: atomic, so its record commits once, with its success."""
    _record("wf_callback", key)
    return key
