import hashlib
import json
from datetime import datetime

import pytest

from background_task.serialization import dumps_params, loads_params, task_hash
from tests.testapp.models import Execution


def Unsaved() -> Execution:
    return Execution(task_name="x", key="k", worker_pid=1, started_at=datetime(2026, 1, 1))


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
        ([1, 2j], {}, "positional argument 1 of type complex is not JSON serializable"),
        ([], {"when": [1, object]}, "keyword argument 'when'[1] of type type"),
        ([{"a": [1, object()]}], {}, "positional argument 0['a'][1] of type object"),
        ([{(1, 2): "a"}], {}, "positional argument 0 has a key of type tuple"),
        ([Unsaved()], {}, "positional argument 0 is an unsaved testapp.Execution"),
    ],
)
def test_unserializable_arguments_are_named(args, kwargs, fragment):
    with pytest.raises(TypeError) as info:
        dumps_params(args, kwargs, "app.f")
    assert fragment in str(info.value)
    assert "'app.f'" in str(info.value)


def _circular() -> list:
    loop: list = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ([1, _circular()], {}, "positional argument 1 refers to itself"),
        ([], {"tree": {"a": _circular()}}, "keyword argument 'tree' refers to itself"),
    ],
)
def test_a_circular_argument_is_named(args, kwargs, fragment):
    with pytest.raises(TypeError, match=r"Cannot enqueue task 'app.f'") as info:
        dumps_params(args, kwargs, "app.f")
    assert fragment in str(info.value)


def test_loads_round_trip_and_1_2_8_quirks():
    assert loads_params('[[1, "a"], {"k": 2}]') == ([1, "a"], {"k": 2})
    # 1.2.8's new_task accepted a bare value as args.
    assert loads_params("[1, {}]") == ([1], {})


@pytest.mark.parametrize("text", ["not json", "[1, 2, 3]", '{"a": 1}', "[[1], 5]"])
def test_loads_rejects_malformed_params(text):
    with pytest.raises(ValueError, match="task_params"):
        loads_params(text)


# -- values beyond plain JSON ----------------------------------------------------------

BERLIN = __import__("zoneinfo").ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN),
        datetime(2026, 1, 1, 12, 0),
        __import__("datetime").date(2024, 2, 29),
        __import__("datetime").time(9, 30, tzinfo=BERLIN),
        __import__("datetime").timedelta(days=-1, seconds=5, microseconds=7),
        __import__("decimal").Decimal("1234.5600"),
        __import__("uuid").UUID("12345678-1234-5678-1234-567812345678"),
        b"\x00\xffbytes",
        {3, 1, 2},
        frozenset({"a", "b"}),
        (1, (2, "x")),
        {"__bgtask__": "not a tag", "other": [1]},
    ],
)
def test_richer_values_round_trip(value):
    text = dumps_params([value], {"same": value})
    json.loads(text)  # still plain, readable JSON
    (loaded,), kwargs = loads_params(text)
    assert loaded == value and type(loaded) is type(value)
    assert kwargs["same"] == value
    if isinstance(value, datetime) and value.tzinfo is not None:
        assert loaded.tzinfo == value.tzinfo  # the zone itself, not just an offset


def test_plain_json_is_stored_as_before_and_1_2_8_rows_load():
    assert dumps_params([[1, "a"], {"b": None}], {}) == '[[[1, "a"], {"b": null}], {}]'
    assert loads_params('[["2026-01-01"], {}]') == (["2026-01-01"], {})  # a string stays one


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __taskdump__(self):
        return "Point", [self.x, self.y]

    @classmethod
    def __taskload__(cls, state):
        return cls(*state)


def test_the_taskdump_protocol_round_trips():
    text = dumps_params([Point(1, 2)], {})
    assert '"name": "Point"' in text and "tests.test_serialization.Point" in text
    assert loads_params(text)[0] == [Point(1, 2)]


def test_a_stored_class_without_taskload_is_refused():
    text = json.dumps(
        [[{"__bgtask__": "object", "name": "x", "class": "os.system", "state": "ls"}], {}]
    )
    with pytest.raises(ValueError, match="has no __taskload__"):
        loads_params(text)


def test_registered_types():
    from fractions import Fraction

    from background_task.serialization import register_type

    register_type(Fraction, "fraction", lambda v: {"v": str(v)}, lambda d: Fraction(d["v"]))
    assert loads_params(dumps_params([Fraction(1, 3)], {}))[0] == [Fraction(1, 3)]
    with pytest.raises(ValueError, match="kind 'unknown-kind' has no decoder"):
        loads_params('[[{"__bgtask__": "unknown-kind"}], {}]')


class Reversed:
    """A whole custom serializer: JSON with the text reversed."""

    @staticmethod
    def dumps(args, kwargs):
        return json.dumps([args, kwargs])[::-1]

    @staticmethod
    def loads(text):
        return json.loads(text[::-1])


def test_a_custom_serializer_setting(settings):
    settings.BACKGROUND_TASK_SERIALIZER = "tests.test_serialization.Reversed"
    text = dumps_params([1], {"a": 2})
    assert text == json.dumps([[1], {"a": 2}])[::-1]
    assert loads_params(text) == ([1], {"a": 2})


@pytest.mark.django_db
def test_model_instances_are_stored_as_references_and_fetched_again():
    from django.utils import timezone

    from background_task.exceptions import ArgumentGone

    row = Execution.objects.create(task_name="x", key="k", worker_pid=1, started_at=timezone.now())
    text = dumps_params([row], {})
    assert json.loads(text)[0][0] == {
        "__bgtask__": "model",
        "model": "testapp.execution",
        "pk": row.pk,
    }
    row.key = "changed"
    row.save()
    assert loads_params(text)[0][0].key == "changed"  # fetched when the task runs
    row.delete()
    with pytest.raises(ArgumentGone, match=r"testapp\.Execution matching pk=.* DoesNotExist"):
        loads_params(text)
