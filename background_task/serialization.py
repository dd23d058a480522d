"""Arguments to and from the ``task_params`` column, exactly as 1.2.8 stored them.

``f(1, b=2)`` is stored as ``json.dumps(([1], {"b": 2}), sort_keys=True)``,
i.e. ``'[[1], {"b": 2}]'``, and ``task_hash`` is the sha1 of the task name
followed by that text. Pure: no Django imports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any


def _describe_problem(value: Any, where: str) -> str | None:
    """Find the first part of ``value`` JSON cannot store, as a readable path."""
    try:
        json.dumps(value, sort_keys=True)
        return None
    except (TypeError, ValueError) as exc:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    return f"{where} has a key of type {type(key).__name__} ({key!r})"
                inner = _describe_problem(item, f"{where}[{key!r}]")
                if inner:
                    return inner
            return f"{where} cannot be stored: {exc}"
        if isinstance(value, list | tuple):
            for index, item in enumerate(value):
                inner = _describe_problem(item, f"{where}[{index}]")
                if inner:
                    return inner
        return f"{where} of type {type(value).__name__} is not JSON serializable ({value!r:.80})"


def dumps_params(args: Sequence[Any], kwargs: Mapping[str, Any], task_name: str = "") -> str:
    """Serialize call arguments, or raise TypeError naming the argument at fault."""
    try:
        return json.dumps((list(args), dict(kwargs)), sort_keys=True)
    except (TypeError, ValueError):
        pass
    for index, value in enumerate(args):
        problem = _describe_problem(value, f"positional argument {index}")
        if problem:
            break
    else:
        for key, value in kwargs.items():
            problem = _describe_problem(value, f"keyword argument {key!r}")
            if problem:
                break
        else:  # pragma: no cover - json failed on the whole but on no part
            problem = "the arguments cannot be stored as JSON"
    task = f" of task {task_name!r}" if task_name else ""
    raise TypeError(
        f"Cannot enqueue{task}: {problem}. Task arguments must be JSON serializable "
        f"(str, int, float, bool, None, lists and dicts with string keys)."
    )


def loads_params(text: str) -> tuple[list[Any], dict[str, Any]]:
    """Parse ``task_params`` back into (args, kwargs); raise ValueError if malformed."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"task_params is not valid JSON: {exc}") from exc
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[1], dict)):
        raise ValueError(f"task_params must be a JSON pair [args, kwargs], not {text[:80]!r}")
    args, kwargs = data
    if not isinstance(args, list):
        # 1.2.8's new_task accepted any JSON value as args (its tests pass 1).
        args = [args]
    return args, {str(key): value for key, value in kwargs.items()}


def task_hash(task_name: str, params: str) -> str:
    """The 1.2.8 identity of a call: sha1 of the name followed by the params."""
    return hashlib.sha1((task_name + params).encode("utf-8")).hexdigest()
