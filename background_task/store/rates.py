"""Rate limits in the database: a run takes one of the starts its key's
rate allows before it starts, or waits until one frees.

A rate of N per window is N rows of :class:`RateSlot` per key, each holding
when it was last used. A start moves the oldest row that is a window old to
now, with a compare-and-set UPDATE in the database's clock (so workers on
hosts with different clocks share one budget), or adds a row while the key
has fewer than N. Each row is used at most once per window, so no window
holds more than N starts; two runs can never both move one row.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Now
from django.utils import timezone

from background_task.core.rates import loaded
from background_task.store.inserting import refusable
from background_task.store.models import RateSlot, Task

logger = logging.getLogger("background_task.worker")

#: Compare-and-set tries before a run waits (each failure means another run
#: took the row in between).
ATTEMPTS = 4
#: Rows read per try: the oldest few, any of which may be a window old.
CANDIDATES = 3


def _add(key: str, number: int, using: str) -> bool:
    """Insert row ``number`` of ``key`` as used now; False if it exists."""
    try:
        with refusable(using):
            RateSlot.objects.using(using).create(key=key, slot=number, started_at=Now())
    except IntegrityError:
        return False
    return True


def take(task: Task, using: str = "default") -> bool:
    """Take a start of ``task``'s rate for its run: True if it may start.

    Otherwise the task waits, unclaimed and with no attempt counted, until
    the oldest start of its key is a window old (its ``run_at`` moves there).
    """
    key, text = task.rate_key, task.rate_limit
    if key is None or text is None:
        return True
    rate = loaded(text)
    window = timedelta(seconds=rate.seconds)
    # Rows beyond this rate's count (left by a larger rate) are not its starts.
    slots = RateSlot.objects.using(using).filter(key=key, slot__lt=rate.starts)
    oldest: datetime | None = None
    # Which rows are a window old, by the database's clock, read with them.
    ready = ExpressionWrapper(Q(started_at__lte=Now() - window), output_field=BooleanField())
    oldest_first = (
        slots.annotate(ready=ready)
        .order_by("started_at", "slot")
        .values_list("slot", "started_at", "ready")
    )
    for _ in range(ATTEMPTS):
        rows = list(oldest_first[:CANDIDATES])
        for number, _, is_ready in rows:
            if not is_ready:
                break
            if slots.filter(slot=number, started_at__lte=Now() - window).update(started_at=Now()):
                return True
        count = slots.count() if len(rows) == CANDIDATES else len(rows)
        if count < rate.starts:
            if _add(key, count, using):
                return True
            continue  # another run added that row first
        oldest = rows[0][1] if rows else None
        break
    _defer(task, (oldest + window) if oldest is not None else timezone.now(), using)
    return False


def _defer(task: Task, until: datetime, using: str) -> None:
    """Put the claimed ``task`` back, due ``until``, with no attempt counted."""
    values = {**task.unstarted_values(), "run_at": max(until, timezone.now())}
    Task.objects.using(using).filter(pk=task.pk, claim_token=task.claim_token).update(**values)
    logger.debug(
        "Task %s (%s) waits for its rate on %s until %s.",
        task.task_id,
        task.task_name,
        task.rate_key,
        values["run_at"],
    )
