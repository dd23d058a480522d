"""Property-based tests: schedule values, argument round trips, settings validation."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from background_task.checks import check_settings
from background_task.core.conf import SPECS, app_settings
from background_task.core.retry import RetryPolicy
from background_task.core.schedules import TaskSchedule
from background_task.serialization import dumps_params, loads_params, task_hash

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
argument_names = st.text(min_size=1, max_size=12)


# -- schedules ---------------------------------------------------------------


@given(st.integers(min_value=-(10**8), max_value=10**8) | st.floats(-1e8, 1e8))
def test_seconds_schedule_runs_that_many_seconds_after_now(seconds):
    run_at = TaskSchedule.create(seconds).run_at_after(NOW)
    assert run_at == NOW + timedelta(seconds=seconds)


@given(st.timedeltas(min_value=timedelta(days=-3000), max_value=timedelta(days=3000)))
def test_timedelta_schedule_is_added_to_now(delta):
    assert TaskSchedule.create(delta).run_at_after(NOW) == NOW + delta


@given(st.datetimes(timezones=st.just(UTC)))
def test_datetime_schedule_is_taken_as_is(moment):
    assert TaskSchedule.create(moment).run_at_after(NOW) == moment


@given(st.sampled_from([math.inf, -math.inf, math.nan]))
def test_non_finite_seconds_are_refused(value):
    with pytest.raises(ValueError, match="finite number of seconds"):
        TaskSchedule.create(value)


@given(st.booleans() | st.text() | st.lists(st.integers(), max_size=2) | st.binary())
def test_other_schedule_types_are_refused_by_name(value):
    with pytest.raises(TypeError, match="schedule must be"):
        TaskSchedule.create(value)


# -- serialization -----------------------------------------------------------


@given(st.lists(json_values, max_size=5), st.dictionaries(argument_names, json_values, max_size=5))
def test_json_arguments_round_trip(args, kwargs):
    text = dumps_params(args, kwargs)
    assert loads_params(text) == (args, kwargs)


@given(st.lists(json_values, max_size=5), st.dictionaries(argument_names, json_values, max_size=5))
def test_plain_json_arguments_are_stored_as_json_dumps_writes_them(args, kwargs):
    """The stored text is hashed into task_hash (1.2.8's identity of a call)."""
    assert dumps_params(args, kwargs) == json.dumps((args, kwargs), sort_keys=True)


@given(st.dictionaries(argument_names, json_values, min_size=2, max_size=5))
def test_the_identity_of_a_call_ignores_keyword_order(kwargs):
    reordered = dict(reversed(list(kwargs.items())))
    assert task_hash("t", dumps_params([], kwargs)) == task_hash("t", dumps_params([], reordered))


@given(
    st.lists(json_values, max_size=3),
    st.integers(min_value=0, max_value=3),
    st.sampled_from([object(), 1j, lambda: None, ...]),
)
def test_an_unserializable_argument_is_named(args, index, bad):
    position = min(index, len(args))
    args = [*args[:position], [bad], *args[position:]]
    with pytest.raises(TypeError, match=rf"positional argument {position}\[0\]"):
        dumps_params(args, {})


@given(st.text(max_size=40))
def test_any_stored_text_either_loads_or_raises_value_error(text):
    try:
        args, kwargs = loads_params(text)
    except ValueError:
        return
    assert isinstance(args, list) and isinstance(kwargs, dict)


# -- retry policy ------------------------------------------------------------


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=1, max_value=60))
def test_backoff_grows_and_stops_at_max_attempts(attempts, max_attempts):
    policy = RetryPolicy()
    assert policy.delay(attempts + 1) >= policy.delay(attempts) > timedelta(0)
    next_run = policy.next_run(attempts, max_attempts, NOW)
    assert (next_run is None) == (attempts >= max_attempts)


# -- settings ----------------------------------------------------------------

any_setting_value = (
    st.none()
    | st.booleans()
    | st.integers(-5, 100)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.sampled_from(["retry", "fail", "ASC", "desc"])
)


@settings(max_examples=300)
@given(st.sampled_from(sorted(SPECS)), any_setting_value)
def test_a_setting_is_accepted_exactly_when_valid_and_named_when_not(key, value):
    spec = SPECS[key]
    name = spec.names[0]
    with override_settings(**{name: value}):
        ids = [message.id for message in check_settings()]
        if spec.is_valid(value):
            assert spec.check_id not in ids
            getattr(app_settings, key)  # reads without error
        else:
            assert spec.check_id in ids
            with pytest.raises(ImproperlyConfigured, match=name):
                getattr(app_settings, key)
