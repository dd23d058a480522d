"""Rate limits: at most N starts with one key in any window, across workers."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from background_task import background
from background_task.core.rates import Rate, parse_rate
from background_task.models import RateSlot, Task
from background_task.runtime.worker import Worker
from background_task.store import rates
from background_task.store.claim import ClaimRequest, get_strategy
from background_task.tasks import tasks
from tests.conftest import wait_until
from tests.testapp.models import Execution
from tests.testapp.tasks import rate_limited


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/m", Rate(100, 60)),
        ("5/s", Rate(5, 1)),
        ("1000/h", Rate(1000, 3600)),
        ("10/30s", Rate(10, 30)),
        (" 2 / minute ", Rate(2, 60)),
    ],
)
def test_rates_are_read_from_text(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["100", "100/d", "0/s", "x/s", 100, "20000/s", "5/0s"])
def test_a_bad_rate_names_itself(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_rate(text)


def test_the_decorator_checks_its_rate_options():
    with pytest.raises(ValueError, match="rate_key needs rate_limit"):
        background(rate_key="x")
    with pytest.raises(TypeError, match="rate_key must be a string or a callable"):
        background(rate_limit="1/s", rate_key=5)


db = pytest.mark.django_db(transaction=True)


@db
def test_a_call_stores_its_key_and_rate():
    task = rate_limited("7:a")
    assert (task.rate_key, task.rate_limit) == ("rate-7", "5/1")
    assert rate_limited("7:b", rate_key="shared").rate_key == "shared"
    with pytest.raises(ValueError, match="has no rate_limit"):
        tasks.enqueue("tests.testapp.tasks.record", "a", rate_key="x")


def _claim(clock, n=20):
    return get_strategy("default").claim(ClaimRequest("test-worker", n, clock(), tasks.names()))


@db
def test_over_its_rate_a_claimed_task_waits_with_no_attempt_counted(clock):
    for n in range(7):
        rate_limited(f"7:{n}")
    other = rate_limited("8:a")
    claimed = _claim(clock)
    taken = [task for task in claimed if rates.take(task)]
    assert len(taken) == 6  # five of account 7, one of account 8
    assert other.pk in {task.pk for task in taken}
    assert RateSlot.objects.filter(key="rate-7").count() == 5
    waiting = Task.objects.filter(status="waiting")
    assert waiting.count() == 2
    for task in waiting:
        assert task.claim_token is None and task.attempts == 0 and task.started_at is None
        # Due when the oldest start of its key is a second old.
        assert timedelta(0) < task.run_at - clock() + timedelta(seconds=1) <= timedelta(seconds=2)


def _windows_hold(starts, limit, seconds, slack=0.05) -> bool:
    """No ``limit + 1`` starts within ``seconds`` (minus clock slack)."""
    starts = sorted(starts)
    return all(
        (starts[i + limit] - starts[i]).total_seconds() >= seconds - slack
        for i in range(len(starts) - limit)
    )


@db
def test_a_worker_runs_them_all_within_the_rate():
    for n in range(12):
        rate_limited(f"7:{n}")
    worker = Worker(sleep=0.05, threads=4)
    deadline = time.monotonic() + 20
    while Task.objects.exists() and time.monotonic() < deadline:
        if not worker.step():
            time.sleep(0.02)
    starts = list(Execution.objects.values_list("started_at", flat=True))
    assert len(starts) == 12
    assert _windows_hold(starts, 5, 1.0)
    span = (max(starts) - min(starts)).total_seconds()
    assert span >= 2.0 - 0.05  # 12 starts at 5 a second need two more windows


@db
def test_real_workers_share_one_budget(start_worker):
    """2 worker processes x 2 threads; two accounts at 5 starts a second each."""
    for n in range(24):
        rate_limited(f"{n % 2}:{n}")
    worker = start_worker("--workers", "2", "--threads", "2", "--sleep", "0.2")
    try:
        wait_until(lambda: Execution.objects.count() == 24, 60)
    finally:
        worker.signal()
        code, output = worker.wait()
    assert code == 0, output
    for account in ("0", "1"):
        starts = list(
            Execution.objects.filter(key__startswith=f"{account}:").values_list(
                "started_at", flat=True
            )
        )
        assert len(starts) == 12
        assert _windows_hold(starts, 5, 1.0), sorted(starts)


@db
def test_runs_in_the_callers_process_spend_no_rate(settings):
    settings.BACKGROUND_TASK_RUN_IMMEDIATELY = True
    for n in range(8):
        rate_limited(f"7:{n}")  # eight at once, over a rate of five a second
    assert Execution.objects.count() == 8
    assert not Task.objects.exists()
    assert not RateSlot.objects.exists()


@db
def test_a_lower_rate_does_not_use_the_rows_a_higher_one_left(clock):
    for n in range(5):
        rate_limited(f"7:{n}")
    assert all(rates.take(task) for task in _claim(clock))  # five rows for 5/s
    for n in range(3):
        rate_limited(f"9:{n}", rate_key="rate-7")
    Task.objects.filter(status="waiting").update(rate_limit="2/1")  # now 2 a second
    RateSlot.objects.update(started_at=clock() - timedelta(seconds=5))  # all a window old
    taken = [rates.take(task) for task in _claim(clock)]
    assert taken.count(True) == 2
