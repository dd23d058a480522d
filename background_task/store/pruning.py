"""Removing finished tasks from the history: expired results, and old rows on request.

Deletes go by primary key in small batches, so no statement holds locks on
a large part of the table and a worker never pauses for long.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.db import connections, transaction

from background_task.core import status
from background_task.store.models import CompletedTask, CompletedTaskQuerySet
from background_task.store.routing import queue_alias

PRUNE_BATCH = 500  # rows per DELETE
WORKER_PRUNE_BATCHES = 10  # batches a worker deletes per maintenance pass, at most

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"`` or ``"2w"`` as a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; use seconds or a number with s, m, h, d or w "
            f"(for example 7d)."
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def expired(now: datetime, using: str | None = None) -> CompletedTaskQuerySet:
    """History rows whose ``ttl`` (or BACKGROUND_TASK_RESULT_TTL) has run out."""
    using = queue_alias(using)
    # Deleted in expiry order: read from the expires_at index. In primary-key
    # order SQLite read the whole table for it (10,000,000 rows beside a
    # long history without a ttl), to find the few rows that expire.
    return CompletedTask.objects.using(using).filter(expires_at__lte=now).order_by("expires_at")


def next_expiry(using: str | None = None) -> datetime | None:
    """When the first history row whose ``ttl`` runs out expires (None: none will)."""
    using = queue_alias(using)
    return (
        CompletedTask.objects.using(using)
        .filter(expires_at__isnull=False)
        .order_by("expires_at")
        .values_list("expires_at", flat=True)
        .first()
    )


def history(
    now: datetime,
    *,
    older_than: timedelta | None = None,
    statuses: Sequence[str] = (),
    using: str | None = None,
) -> CompletedTaskQuerySet:
    """History rows finished more than ``older_than`` ago, of the given statuses."""
    using = queue_alias(using)
    rows = CompletedTask.objects.using(using).all()
    if older_than is not None:
        rows = rows.filter(run_at__lt=now - older_than)  # run_at: when it finished (1.2.8)
    if statuses:
        rows = rows.filter(status__in=finished_statuses(statuses))
    return rows


def finished_statuses(statuses: Sequence[str]) -> list[str]:
    """``statuses`` as a list; ValueError naming any that is not a finished status."""
    unknown = set(statuses) - set(status.FINISHED)
    if unknown:
        raise ValueError(
            f"Unknown status(es) {', '.join(sorted(unknown))}; finished tasks are "
            f"{', '.join(status.FINISHED)}."
        )
    return list(statuses)


def delete_in_batches(
    rows: CompletedTaskQuerySet,
    *,
    batch: int = PRUNE_BATCH,
    max_batches: int | None = None,
    progress: Callable[[int], None] | None = None,
    skip_locked: bool = False,
    pause: float = 0.0,
) -> int:
    """Delete ``rows`` ``batch`` at a time, in their order (the primary key's
    if they have none); return how many were deleted.

    ``pause``: seconds to wait between two batches, to leave the database
    to the workers while a large history goes.

    With ``skip_locked``, each batch takes only rows no other transaction
    holds (where the database can skip locked rows), so pruners running at
    once on several workers share the work instead of queueing behind each
    other's locks to delete the same rows.
    """
    deleted = batches = 0
    skip_locked = skip_locked and connections[rows.db].features.has_select_for_update_skip_locked
    if not rows.query.order_by:  # the order the selection gave, else the primary key
        rows = rows.order_by("pk")
    selection = rows.select_for_update(skip_locked=True) if skip_locked else rows
    while max_batches is None or batches < max_batches:
        # With skip_locked, the batch's rows stay locked until they are deleted.
        with transaction.atomic(using=rows.db) if skip_locked else contextlib.nullcontext():
            ids = list(selection.values_list("pk", flat=True)[:batch])
            if not ids:
                break
            count, _ = CompletedTask.objects.using(rows.db).filter(pk__in=ids).delete()
        deleted += count
        batches += 1
        if progress is not None:
            progress(deleted)
        if len(ids) < batch:
            break
        if pause > 0:
            time.sleep(pause)
    return deleted


def prune_expired(now: datetime, using: str | None = None) -> int:
    """A worker's share of pruning: a few batches of expired rows."""
    using = queue_alias(using)
    return delete_in_batches(expired(now, using), max_batches=WORKER_PRUNE_BATCHES)
