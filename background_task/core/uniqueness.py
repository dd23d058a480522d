"""Unique tasks: the key a call is deduplicated on, as the ``unique_key`` column holds it.

Pure. A key is stored as a 64-character string: a prefix that says how long
the row keeps it, then a digest of the task name and the key. The database's
unique constraint on the column is what makes two waiting copies impossible;
a claim clears the keys that are kept only until the task starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from background_task.core.limits import KeySource, check_key, key_text

#: Until when a row keeps its key: until a worker claims it, or until it finished.
UNTIL_START = "start"
UNTIL_FINISH = "finish"
UNTIL = (UNTIL_START, UNTIL_FINISH)
#: What stored keys start with; a claim clears those starting with START_PREFIX.
START_PREFIX = "s:"
FINISH_PREFIX = "f:"
#: Characters of the digest stored after the prefix (248 bits): the column holds 64.
DIGEST_LENGTH = 62


class UniqueSpec(NamedTuple):
    """How a call is made unique: the key's source (None: the arguments) and ``until``."""

    source: KeySource
    until: str


def check_until(value: Any) -> str:
    """``unique_until`` checked: ``"start"`` or ``"finish"``."""
    if value not in UNTIL:
        raise ValueError(
            f"unique_until must be 'start' (the key is free again once a worker "
            f"starts the task) or 'finish' (only once it finished), not {value!r}."
        )
    return str(value)


def check_source(value: Any, *, per_call: bool) -> KeySource:
    """A ``unique_key`` option checked: a string (or, on the decorator, a
    callable of the call's arguments); any length, as only its digest is stored."""
    return check_key(value, per_call=per_call, option="unique_key", max_length=None)


def stored_key(task_name: str, key: str, until: str) -> str:
    """The column value for ``key`` of ``task_name`` (keys are per task name)."""
    digest = hashlib.sha256(f"{task_name}\x00{key}".encode()).hexdigest()[:DIGEST_LENGTH]
    return (START_PREFIX if until == UNTIL_START else FINISH_PREFIX) + digest


def call_key(
    task_name: str,
    source: KeySource,
    until: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    params: Callable[[], str],
) -> str:
    """The stored key of one call: from ``source`` (a string, or a callable
    given the call's arguments), else from the call's serialized arguments
    (``params()``, computed only then)."""
    if source is None:
        key = "params:" + params()
    else:
        made = key_text(task_name, source, args, kwargs, option="unique_key", max_length=None)
        key = "key:" + made
    return stored_key(task_name, key, until)


def kept_until(stored: str | None) -> str | None:
    """Until when a stored key is kept (None: the row has no key)."""
    if not stored:
        return None
    return UNTIL_START if stored.startswith(START_PREFIX) else UNTIL_FINISH
