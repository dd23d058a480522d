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

from django.db import IntegrityError, connections
from django.db.models import BooleanField, ExpressionWrapper, Q, Subquery
from django.db.models.functions import Now
from django.utils import timezone

from background_task.core.rates import loaded
from background_task.store.inserting import refusable
from background_task.store.models import RateSlot, Task
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.worker")

#: Compare-and-set tries before a run waits (each failure means another run
#: took the row in between).
ATTEMPTS = 4


def _add(key: str, number: int, using: str) -> bool:
    """Insert row ``number`` of ``key`` as used now; False if it exists."""
    try:
        with refusable(using):
            RateSlot.objects.using(using).create(key=key, slot=number, started_at=Now())
    except IntegrityError:
        return False
    return True


def take(task: Task, using: str | None = None) -> bool:
    """Take a start of ``task``'s rate for its run: True if it may start.

    Otherwise the task waits, unclaimed and with no attempt counted, until
    the oldest start of its key is a window old (its ``run_at`` moves there).
    """
    key, text = task.rate_key, task.rate_limit
    if key is None or text is None:
        return True
    using = queue_alias(using)
    rate = loaded(text)
    window = timedelta(seconds=rate.seconds)
    # Rows beyond this rate's count (left by a larger rate) are not its starts.
    slots = RateSlot.objects.using(using).filter(key=key, slot__lt=rate.starts)
    if _move_oldest_ready(key, rate.starts, window, using):
        return True  # the usual case: one statement
    oldest: datetime | None = None
    # Which rows are a window old, by the database's clock, read with them.
    ready = ExpressionWrapper(Q(started_at__lte=Now() - window), output_field=BooleanField())
    oldest_first = (
        slots.annotate(ready=ready).order_by("started_at").values_list("started_at", "ready")
    )
    for _ in range(ATTEMPTS):
        count = slots.count()
        if count < rate.starts:
            if _add(key, count, using):
                return True
            continue  # another run added that row first
        rows = list(oldest_first[:1])
        if rows and rows[0][1]:  # one is ready again
            if _move_oldest_ready(key, rate.starts, window, using):
                return True
            continue  # another run took it first
        oldest = rows[0][0] if rows else None
        break
    _defer(task, (oldest + window) if oldest is not None else timezone.now(), using)
    return False


def _move_oldest_ready(key: str, starts: int, window: timedelta, using: str) -> bool:
    """Move the oldest of ``key``'s first ``starts`` rows that is a window old
    to now, in the database's clock, with one UPDATE; False if none is ready.

    The UPDATE rechecks the row's age as it writes it, so two runs can never
    both move one row. Each database gets the statement that also keeps
    racing runs apart (see :data:`_OLDEST_READY`).
    """
    connection = connections[using]
    template = _OLDEST_READY.get(connection.vendor)
    if template is None:
        slots = RateSlot.objects.using(using).filter(key=key, slot__lt=starts)
        ready = slots.filter(started_at__lte=Now() - window)
        oldest = ready.order_by("started_at").values("pk")[:1]
        return bool(ready.filter(pk=Subquery(oldest)).update(started_at=Now()))
    quote = connection.ops.quote_name
    sql = template.format(
        table=quote(RateSlot._meta.db_table),
        id=quote("id"),
        key=quote("key"),
        slot=quote("slot"),
        at=quote("started_at"),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, starts, int(window.total_seconds() * 1_000_000)])
        return bool(cursor.rowcount == 1)


#: The one-statement start, where the ORM's (SQLite's) is not the best:
#: PostgreSQL skips a row another run is moving and takes the next oldest
#: (the ORM allows no ``FOR UPDATE`` outside a transaction, which would cost
#: two more round trips); MySQL and MariaDB take no LIMIT in a subquery of
#: the table they update, but ``UPDATE ... ORDER BY ... LIMIT`` does the
#: same, and InnoDB moves on to the next row when one is taken.
_OLDEST_READY = {
    "postgresql": (
        "UPDATE {table} SET {at} = STATEMENT_TIMESTAMP() WHERE {id} = ("
        "SELECT {id} FROM {table} WHERE {key} = %s AND {slot} < %s "
        "AND {at} <= STATEMENT_TIMESTAMP() - %s * INTERVAL '1 microsecond' "
        "ORDER BY {at} LIMIT 1 FOR UPDATE SKIP LOCKED)"
    ),
    "mysql": (
        "UPDATE {table} SET {at} = CURRENT_TIMESTAMP(6) "
        "WHERE {key} = %s AND {slot} < %s "
        "AND {at} <= CURRENT_TIMESTAMP(6) - INTERVAL %s MICROSECOND "
        "ORDER BY {at} LIMIT 1"
    ),
}


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
