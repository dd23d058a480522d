import re
from datetime import UTC, datetime, timedelta

import pytest

from background_task import Retry
from background_task.api.registry import Tasks
from background_task.core.retry import (
    RetryPolicy,
    exception_types,
    load_policy,
    make_policy,
    retries,
    stored_policy,
)
from background_task.models import CompletedTask, Task
from background_task.runtime.worker import Worker
from tests.conftest import Clock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_default_backoff_is_1_2_8_formula():
    policy = RetryPolicy()
    expected = {1: 6, 2: 21, 3: 86, 4: 261, 5: 630, 10: 10005, 24: 331781}
    for attempts, seconds in expected.items():
        assert policy.delay(attempts) == timedelta(seconds=seconds)


def test_next_run_stops_at_max_attempts():
    policy = RetryPolicy()
    assert policy.next_run(1, 3, NOW) == NOW + timedelta(seconds=6)
    assert policy.next_run(3, 3, NOW) is None
    assert policy.next_run(1, 1, NOW) is None


def test_cap():
    assert RetryPolicy(max_delay=60).delay(10) == timedelta(seconds=60)


# -- policies of every form -------------------------------------------------------


def test_every_form_of_retry_delay_makes_a_policy():
    assert make_policy(30).delay(7) == timedelta(seconds=30)
    assert make_policy(timedelta(minutes=2)).delay(1) == timedelta(minutes=2)
    assert make_policy({"base": 1, "exponent": 2}).delay(3) == timedelta(seconds=10)
    assert make_policy(lambda n: n * 10).delay(4) == timedelta(seconds=40)
    assert make_policy(lambda n: timedelta(hours=n)).delay(2) == timedelta(hours=2)
    policy = RetryPolicy(base=2, exponent=3, max_delay=100)
    assert make_policy(policy) is policy
    assert [policy.delay(n).total_seconds() for n in (1, 2, 5)] == [3, 10, 100]


def test_jitter_shortens_each_wait_by_up_to_its_fraction():
    policy = RetryPolicy(base=100, exponent=0, jitter=0.2)
    assert policy.delay(1, rand=lambda: 0.0) == timedelta(seconds=100)
    assert policy.delay(1, rand=lambda: 0.5) == timedelta(seconds=90)
    assert policy.delay(1, rand=lambda: 1.0) == timedelta(seconds=80)
    assert timedelta(seconds=80) <= policy.delay(1) <= timedelta(seconds=100)


@pytest.mark.parametrize(
    ("value", "error", "fragment"),
    [
        (-1, TypeError, "retry_delay must be seconds >= 0"),
        ("soon", TypeError, "not str 'soon'"),
        ({"base": 1, "grow": 2}, ValueError, "unknown key(s) 'grow'"),
        ({"jitter": 2}, ValueError, "jitter must be between 0 and 1"),
        ({"max_delay": -5}, ValueError, "max_delay must be None or a number"),
        (ValueError, TypeError, "retry_delay must be"),
    ],
)
def test_a_bad_retry_delay_is_refused_with_its_problem(value, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        make_policy(value)


def test_a_callable_returning_nonsense_says_so():
    with pytest.raises(ValueError, match="returned 'x' for attempt 2"):
        make_policy(lambda n: "x").delay(2)


def test_a_call_stores_its_policy_as_json_and_never_a_callable():
    stored = stored_policy(timedelta(seconds=45))
    assert load_policy(stored) == RetryPolicy(base=45.0, exponent=0)
    with pytest.raises(TypeError, match="A callable retry_delay goes on the decorator"):
        stored_policy(lambda n: n)


def test_retry_on_and_dont_retry_on_filters():
    assert retries(ValueError(), None, None)
    assert retries(ConnectionResetError(), (ConnectionError,), None)
    assert not retries(ValueError(), (ConnectionError,), None)
    assert not retries(KeyError(), None, (LookupError,))
    assert not retries(ConnectionError(), (ConnectionError,), (ConnectionError,))
    with pytest.raises(TypeError, match="retry_on must be an exception class"):
        exception_types(("ValueError",), "retry_on")


# -- in a worker ----------------------------------------------------------------------


def _failing(registry: Tasks, name: str, exc: BaseException, **options: object):
    def job() -> None:
        raise exc

    job.__qualname__ = name
    return registry.background(name=f"retry.{name}", **options)(job)


def _fail_once(registry: Tasks, proxy: object, clock: Clock, **call_options: object) -> Task:
    task = proxy(**call_options)  # type: ignore[operator]
    Worker(registry=registry, clock=clock, sleep=0.01).step()
    return Task.objects.get(task_id=task.task_id)


@pytest.mark.django_db(transaction=True)
def test_the_decorator_s_retry_delay_sets_the_wait(clock):
    registry = Tasks()
    fixed = _failing(registry, "fixed", ValueError("x"), retry_delay=30)
    growing = _failing(registry, "growing", ValueError("x"), retry_delay=lambda n: n * 100)
    assert _fail_once(registry, fixed, clock).run_at == clock.now + timedelta(seconds=30)
    assert _fail_once(registry, growing, clock).run_at == clock.now + timedelta(seconds=100)


@pytest.mark.django_db(transaction=True)
def test_a_call_s_retry_delay_wins_and_is_kept_by_a_requeue(clock):
    registry = Tasks()
    proxy = _failing(registry, "per_call", ValueError("x"), retry_delay=30, max_attempts=1)
    row = Task.objects.get(task_id=proxy(retry_delay=timedelta(minutes=2)).task_id)
    assert load_policy(row.retry_delay) == RetryPolicy(base=120.0, exponent=0)
    Worker(registry=registry, clock=clock, sleep=0.01).step()
    failed = CompletedTask.objects.get(task_id=row.task_id)
    assert failed.status == "error" and failed.retry_delay == row.retry_delay
    again = failed.requeue()
    assert again.retry_delay == row.retry_delay
    Task.objects.filter(pk=again.pk).update(max_attempts=2)
    assert _fail_once_row(registry, clock, again).run_at == clock.now + timedelta(minutes=2)


def _fail_once_row(registry: Tasks, clock: Clock, task: Task) -> Task:
    Worker(registry=registry, clock=clock, sleep=0.01).step()
    return Task.objects.get(task_id=task.task_id)


@pytest.mark.django_db(transaction=True)
def test_the_setting_is_the_project_s_default(clock, settings):
    settings.BACKGROUND_TASK_RETRY_POLICY = {"base": 7, "exponent": 0}
    registry = Tasks()
    proxy = _failing(registry, "by_setting", ValueError("x"))
    assert _fail_once(registry, proxy, clock).run_at == clock.now + timedelta(seconds=7)


@pytest.mark.django_db(transaction=True)
def test_without_any_the_backoff_is_1_2_8_s(clock):
    registry = Tasks()
    proxy = _failing(registry, "default", ValueError("x"))
    assert _fail_once(registry, proxy, clock).run_at == clock.now + timedelta(seconds=6)


@pytest.mark.django_db(transaction=True)
def test_retry_on_fails_other_errors_at_once(clock):
    registry = Tasks()
    other = _failing(registry, "other", ValueError("no"), retry_on=(ConnectionError,))
    listed = _failing(registry, "listed", ConnectionResetError("yes"), retry_on=ConnectionError)
    asked = _failing(registry, "asked", Retry(delay=5), retry_on=(ConnectionError,))
    task = other()
    Worker(registry=registry, clock=clock, sleep=0.01).step()
    failed = CompletedTask.objects.get(task_id=task.task_id)
    assert (failed.status, failed.attempts) == ("error", 1)
    assert _fail_once(registry, listed, clock).attempts == 1  # retried
    # A task that raises Retry asked for another attempt: that is always honoured.
    assert _fail_once(registry, asked, clock).run_at == clock.now + timedelta(seconds=5)


@pytest.mark.django_db(transaction=True)
def test_dont_retry_on_fails_those_at_once(clock):
    registry = Tasks()
    proxy = _failing(registry, "missing", KeyError("gone"), dont_retry_on=(LookupError,))
    task = proxy()
    Worker(registry=registry, clock=clock, sleep=0.01).step()
    assert CompletedTask.objects.get(task_id=task.task_id).status == "error"


def test_bad_options_are_refused_at_decoration_and_at_the_call():
    registry = Tasks()
    with pytest.raises(TypeError, match="retry_delay must be"):
        registry.background(retry_delay="soon")
    with pytest.raises(TypeError, match="dont_retry_on must be an exception class"):
        registry.background(dont_retry_on="KeyError")
    proxy = registry.background(name="retry.ok")(lambda: None)
    with pytest.raises(TypeError, match="A callable retry_delay goes on the decorator"):
        proxy(retry_delay=lambda n: n)


def test_a_bad_setting_is_a_system_check_error(settings):
    from background_task.checks import check_settings

    settings.BACKGROUND_TASK_RETRY_POLICY = {"base": -1}
    errors = [e for e in check_settings(None) if e.id == "background_task.E024"]
    assert len(errors) == 1
    assert "BACKGROUND_TASK_RETRY_POLICY is not a retry policy" in errors[0].msg
