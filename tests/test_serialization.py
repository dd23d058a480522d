import hashlib
import json
from datetime import datetime

import pytest

from background_task.serialization import dumps_params, loads_params, task_hash


def test_params_are_stored_exactly_as_1_2_8_stored_them():
    assert dumps_params([1], {}) == "[[1], {}]"
    assert dumps_params((1, "a"), {"z": 1, "b": [2]}) == json.dumps(
        ([1, "a"], {"z": 1, "b": [2]}), sort_keys=True
    )


def test_hash_is_sha1_of_name_and_params():
    params = dumps_params([1], {})
    assert task_hash("app.f", params) == hashlib.sha1(b"app.f[[1], {}]").hexdigest()


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ([1, datetime(2020, 1, 1)], {}, "positional argument 1 of type datetime"),
        ([], {"when": {1, 2}}, "keyword argument 'when' of type set"),
        ([{"a": [1, object()]}], {}, "positional argument 0['a'][1] of type object"),
        ([{1: "a", "b": 2}], {}, "positional argument 0 cannot be stored"),
    ],
)
def test_unserializable_arguments_are_named(args, kwargs, fragment):
    with pytest.raises(TypeError) as info:
        dumps_params(args, kwargs, "app.f")
    assert fragment in str(info.value)
    assert "'app.f'" in str(info.value)


def test_loads_round_trip_and_1_2_8_quirks():
    assert loads_params('[[1, "a"], {"k": 2}]') == ([1, "a"], {"k": 2})
    # 1.2.8's new_task accepted a bare value as args.
    assert loads_params("[1, {}]") == ([1], {})


@pytest.mark.parametrize("text", ["not json", "[1, 2, 3]", '{"a": 1}', "[[1], 5]"])
def test_loads_rejects_malformed_params(text):
    with pytest.raises(ValueError, match="task_params"):
        loads_params(text)
