"""Arguments to and from the ``task_params`` column.

Plain JSON arguments are stored exactly as django-background-tasks 1.2.8
stored them: ``f(1, b=2)`` is ``json.dumps(([1], {"b": 2}), sort_keys=True)``,
i.e. ``'[[1], {"b": 2}]'``, and ``task_hash`` is the sha1 of the task name
followed by that text. So 1.2.8 rows load unchanged, and a 1.2.8 call and the
same call made now have the same hash.

Other values are stored as small tagged JSON objects that stay readable in
the admin, ``{"__bgtask__": "datetime", "v": "2026-11-23T09:00:00+01:00",
"tz": "Europe/Berlin"}``:

- datetime, date, time and timedelta (time zones kept), Decimal, UUID,
  bytes, set, frozenset and tuple;
- Django model instances, stored as a reference (app label, model, primary
  key) and fetched again when the task runs;
- objects with the ``__taskdump__`` / ``__taskload__`` protocol (the
  frasco-tasks seed): ``__taskdump__()`` returns ``(class name, state)``,
  the class method ``__taskload__(state)`` builds the object again;
- any type registered with :func:`register_type`.

Nothing is ever unpickled or evaluated. Loading an object of the protocol
imports only the class recorded when it was dumped, and only calls its
``__taskload__``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from importlib import import_module
from typing import Any

from background_task.core.conf import app_settings, is_set

TAG = "__bgtask__"


class _Unstorable(TypeError):
    """Raised while encoding; carries the path to the value at fault."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path


@dataclass(frozen=True)
class Codec:
    """How one type is stored: ``encode(value) -> JSON data``, ``decode(data) -> value``."""

    name: str
    type: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_codecs: list[Codec] = []
_by_name: dict[str, Codec] = {}
_taskload_classes: dict[str, type] = {}


def register_type(
    cls: type, name: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]
) -> None:
    """Store instances of ``cls`` (a third-party type, say) as ``encode(value)``,
    which must be JSON data, and load them with ``decode(data)``.

    ``name`` is written in the row; keep it stable. Registering a name again
    replaces the earlier codec. Register in an ``AppConfig.ready()`` so that
    both the enqueueing process and the workers have it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A codec needs a non-empty name, not {name!r}.")
    if name in _by_name:
        _codecs.remove(_by_name[name])
    codec = Codec(name, cls, encode, decode)
    _by_name[name] = codec
    # Subclasses first: a datetime is also a date.
    _codecs.append(codec)
    _codecs.sort(key=lambda c: len(c.type.__mro__), reverse=True)


def register_class(cls: type, name: str | None = None) -> type:
    """Make a class of the ``__taskdump__`` protocol loadable by the name its
    ``__taskdump__`` returns (default: its ``__name__``); usable as a decorator."""
    if not hasattr(cls, "__taskload__"):
        raise TypeError(f"{cls.__name__} has no __taskload__ class method.")
    _taskload_classes[name or cls.__name__] = cls
    return cls


def _zone_name(zone: tzinfo | None) -> str | None:
    key = getattr(zone, "key", None)  # zoneinfo.ZoneInfo
    return key if isinstance(key, str) else None


def _encode_zoned(value: datetime | time) -> dict[str, Any]:
    """A datetime or time as ISO text, plus its zone's name when it has one."""
    data: dict[str, Any] = {"v": value.isoformat()}
    if name := _zone_name(value.tzinfo):
        data["tz"] = name
    return data


def _decode_datetime(data: dict[str, Any]) -> datetime:
    value = datetime.fromisoformat(data["v"])
    if data.get("tz"):
        from zoneinfo import ZoneInfo

        value = value.astimezone(ZoneInfo(data["tz"]))
    return value


def _decode_time(data: dict[str, Any]) -> time:
    value = time.fromisoformat(data["v"])
    if data.get("tz"):
        from zoneinfo import ZoneInfo

        value = value.replace(tzinfo=ZoneInfo(data["tz"]))
    return value


def _sorted_items(values: Any) -> list[Any]:
    items = list(values)
    try:
        return sorted(items)
    except TypeError:
        return items  # mixed types: any order, still a set


for _codec in (
    Codec("datetime", datetime, _encode_zoned, _decode_datetime),
    Codec("date", date, lambda v: {"v": v.isoformat()}, lambda d: date.fromisoformat(d["v"])),
    Codec("time", time, _encode_zoned, _decode_time),
    Codec(
        "timedelta",
        timedelta,
        lambda v: {"v": [v.days, v.seconds, v.microseconds]},
        lambda d: timedelta(days=d["v"][0], seconds=d["v"][1], microseconds=d["v"][2]),
    ),
    Codec("decimal", Decimal, lambda v: {"v": str(v)}, lambda d: Decimal(d["v"])),
    Codec("uuid", uuid.UUID, lambda v: {"v": str(v)}, lambda d: uuid.UUID(d["v"])),
    Codec(
        "bytes",
        bytes,
        lambda v: {"v": base64.b64encode(v).decode("ascii")},
        lambda d: base64.b64decode(d["v"]),
    ),
):
    register_type(_codec.type, _codec.name, _codec.encode, _codec.decode)


def _encode(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is float or kind is bool:
        return value
    if kind is list:
        return [_encode_at(item, f"[{index}]") for index, item in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                if isinstance(key, int | float | bool) or key is None:
                    key = json.dumps(key)  # what json.dumps would do with the key
                else:
                    raise _Unstorable(
                        f"has a key of type {type(key).__name__} ({key!r:.40}); "
                        f"dict keys must be strings"
                    )
            out[key] = _encode_at(item, f"[{key!r}]")
        if TAG in out:  # a user dict that looks like a tagged value: stored as pairs
            return {TAG: "dict", "v": [[key, item] for key, item in out.items()]}
        return out
    if kind is tuple:
        return {TAG: "tuple", "v": [_encode_at(item, f"[{i}]") for i, item in enumerate(value)]}
    if kind is set or kind is frozenset:
        name = kind.__name__
        items = _sorted_items(value)
        return {TAG: name, "v": [_encode_at(item, f"[{i}]") for i, item in enumerate(items)]}
    if isinstance(value, float | int | str) and not isinstance(value, bool):
        return value  # subclasses (an IntEnum, a str Enum): stored as the plain value
    for codec in _codecs:
        if isinstance(value, codec.type):
            return {TAG: codec.name, **codec.encode(value)}
    dump = getattr(value, "__taskdump__", None)
    if callable(dump):
        name, state = dump()
        cls = type(value)
        return {
            TAG: "object",
            "name": name,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "state": _encode_at(state, ".__taskdump__()"),
        }
    model = _model_reference(value)
    if model is not None:
        return model
    raise _Unstorable(
        f"of type {kind.__name__} is not JSON serializable ({value!r:.80}); use JSON data, "
        f"a type listed in the docs, an object with __taskdump__/__taskload__, or "
        f"background_task.serialization.register_type()"
    )


def _encode_at(value: Any, step: str) -> Any:
    try:
        return _encode(value)
    except _Unstorable as exc:
        exc.path = step + exc.path
        raise


def _model_reference(value: Any) -> dict[str, Any] | None:
    meta = getattr(value, "_meta", None)
    if meta is None or not hasattr(meta, "label_lower") or not hasattr(value, "pk"):
        return None
    if value.pk is None:
        raise _Unstorable(f"is an unsaved {meta.label} (no primary key to refer to)")
    return {TAG: "model", "model": meta.label_lower, "pk": _encode(value.pk)}


def _load_model(data: dict[str, Any]) -> Any:
    from django.apps import apps

    from background_task.core.exceptions import ArgumentGone

    model = apps.get_model(data["model"])
    try:
        return model._default_manager.get(pk=data["pk"])
    except model.DoesNotExist:
        raise ArgumentGone(
            f"{model._meta.label} matching pk={data['pk']!r} DoesNotExist: the row was "
            f"deleted after the task was queued."
        ) from None


def _load_object(data: dict[str, Any]) -> Any:
    name = data["name"]
    cls = _taskload_classes.get(name)
    if cls is None:
        module_name, _, attribute = str(data["class"]).rpartition(".")
        try:
            cls = getattr(import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"cannot load {name!r}: class {data['class']!r} not found") from exc
        if not isinstance(cls, type) or not callable(getattr(cls, "__taskload__", None)):
            raise ValueError(f"cannot load {name!r}: {data['class']} has no __taskload__")
    return cls.__taskload__(data["state"])  # type: ignore[attr-defined]


def _decode(data: dict[str, Any]) -> Any:
    tag = data.get(TAG)
    if tag is None or not isinstance(tag, str):
        return data
    if tag == "dict":
        return dict(data["v"])
    if tag == "tuple":
        return tuple(data["v"])
    if tag == "set":
        return set(data["v"])
    if tag == "frozenset":
        return frozenset(data["v"])
    if tag == "model":
        return _load_model(data)
    if tag == "object":
        return _load_object(data)
    codec = _by_name.get(tag)
    if codec is None:
        raise ValueError(
            f"a stored value of kind {tag!r} has no decoder in this process; register it "
            f"with background_task.serialization.register_type()"
        )
    return codec.decode(data)


#: ``json.loads(text, object_hook=_decode)``, without building a decoder per call.
_DECODER = json.JSONDecoder(object_hook=_decode)


def _describe(where: str, exc: _Unstorable) -> str:
    return f"{where}{exc.path} {exc.problem}"


def dumps_params(args: Sequence[Any], kwargs: Mapping[str, Any], task_name: str = "") -> str:
    """Serialize call arguments, or raise TypeError naming the argument at fault."""
    return params_dumper()(args, kwargs, task_name)


def params_dumper() -> Callable[[Sequence[Any], Mapping[str, Any], str], str]:
    """The function :func:`dumps_params` uses now: the project's serializer
    or the built-in one (look it up once for many calls)."""
    custom = _custom_serializer()
    if custom is None:
        return _dumps_builtin

    def dumps(args: Sequence[Any], kwargs: Mapping[str, Any], task_name: str = "") -> str:
        text: str = custom.dumps(list(args), dict(kwargs))
        return text

    return dumps


#: ``json.dumps(value, sort_keys=True)``, without building an encoder per call.
_ENCODER = json.JSONEncoder(sort_keys=True)


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """The C encoder that ``_ENCODER.encode`` builds on every call, built once.

    The same text as :data:`_ENCODER` (the stored text is hashed into
    ``task_hash``, so it must never change), without its check for circular
    structures: :func:`_encode` has copied the value by then, and a circular
    one ends its recursion first. None where the json module has no C
    accelerator (``_ENCODER.encode`` is used then).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    quote = getattr(json.encoder, "c_encode_basestring_ascii", None)
    if make is None or quote is None:
        return None
    encoder = _ENCODER
    return make(  # type: ignore[no-any-return]
        None,  # markers: no circular check
        encoder.default,
        quote,  # ensure_ascii=True, the default
        encoder.indent,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )


_C_ENCODER = _c_encoder()


def _json(value: Any) -> str:
    """``_ENCODER.encode(value)`` for a value :func:`_encode` returned."""
    if _C_ENCODER is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


def _dumps_builtin(args: Sequence[Any], kwargs: Mapping[str, Any], task_name: str = "") -> str:
    at: int | str | None = None  # the argument being encoded: its position or keyword
    try:
        encoded_args = []
        for at, value in enumerate(args):  # noqa: B007 (read by the except clauses)
            encoded_args.append(_encode(value))
        encoded_kwargs = {}
        for at, value in kwargs.items():
            encoded_kwargs[at] = _encode(value)
    except _Unstorable as exc:
        raise _cannot_enqueue(task_name, _describe(_argument(at), exc)) from None
    except RecursionError:
        raise _cannot_enqueue(
            task_name, f"{_argument(at)} refers to itself or is nested too deeply to store"
        ) from None
    try:
        return _json((encoded_args, encoded_kwargs))
    except (ValueError, RecursionError) as exc:
        raise _cannot_enqueue(
            task_name, f"the arguments cannot be stored as JSON ({exc})"
        ) from None


def _argument(at: int | str | None) -> str:
    if at is None:
        return "the arguments"
    return f"positional argument {at}" if isinstance(at, int) else f"keyword argument {at!r}"


def _cannot_enqueue(task_name: str, problem: str) -> TypeError:
    task = f"task {task_name!r}" if task_name else "the task"
    return TypeError(f"Cannot enqueue {task}: {problem}.")


def loads_params(text: str) -> tuple[list[Any], dict[str, Any]]:
    """Parse ``task_params`` back into (args, kwargs); raise ValueError if malformed.

    A model argument whose row is gone raises ArgumentGone (a DoesNotExist).
    """
    custom = _custom_serializer()
    if custom is not None:
        args, kwargs = custom.loads(text)
        return list(args), dict(kwargs)
    try:
        data = _DECODER.decode(text)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"task_params cannot be read: {exc}") from exc
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[1], dict)):
        raise ValueError(f"task_params must be a JSON pair [args, kwargs], not {text[:80]!r}")
    args, kwargs = data
    if not isinstance(args, list):
        # 1.2.8's new_task accepted any JSON value as args (its tests pass 1).
        args = [args]
    return args, {str(key): value for key, value in kwargs.items()}


def _custom_serializer() -> Any:
    if not is_set("BACKGROUND_TASK_SERIALIZER"):  # the common case, checked per call
        return None
    return app_settings.SERIALIZER


def task_hash(task_name: str, params: str) -> str:
    """The 1.2.8 identity of a call: sha1 of the name followed by the params."""
    return hashlib.sha1((task_name + params).encode("utf-8")).hexdigest()
