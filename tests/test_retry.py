from datetime import UTC, datetime, timedelta

from background_task.core.retry import RetryPolicy

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
