"""What a claim writes into ``unique_key``: keys held only until a task
starts are cleared, so the next call of a unique task queues a new run."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Case, F, Value, When
from django.db.models.expressions import Expression

from background_task.core.uniqueness import START_PREFIX


def released_key() -> Expression:
    """``unique_key`` after a claim: keys held until the start are cleared."""
    return Case(
        When(unique_key__startswith=START_PREFIX, then=Value(None)),
        default=F("unique_key"),
    )


def released_key_sql(quote_name: Callable[[str], str]) -> tuple[str, list[object]]:
    """:func:`released_key` as an SQL expression for a hand-written UPDATE."""
    column = quote_name("unique_key")
    return f"CASE WHEN {column} LIKE %s THEN NULL ELSE {column} END", [START_PREFIX + "%"]
