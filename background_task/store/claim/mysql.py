"""Claiming on MySQL 8 and MariaDB 10.6+."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from django.db import DatabaseError

from background_task.core import status
from background_task.core.conf import app_settings
from background_task.store.claim import bands
from background_task.store.claim.base import ClaimRequest
from background_task.store.claim.skip_locked import SkipLockedClaimStrategy
from background_task.store.models import Task, TaskQuerySet

CHANGE_POLL_INTERVAL = 0.02  # seconds between checks for new rows when idle


class MySQLClaimStrategy(SkipLockedClaimStrategy):
    """SKIP LOCKED claims. InnoDB locks every index record a locking read
    scans, so the candidate query walks the (status, priority, run_at, id)
    index in order and stops at LIMIT rather than sorting a large set.

    The candidates are read priority by priority, each as a ``run_at``
    range, so tasks scheduled for later are not read (see
    :mod:`background_task.store.claim.bands` for why). MariaDB cannot seek with a
    value from a recursive CTE (it reads the whole ``status`` prefix of the
    index instead), so the walk over the waiting priorities is one short
    query per priority (:meth:`due_priorities`). The claim then lists the
    priorities that hold due tasks (``priority IN (...)``), which InnoDB
    reads as one range per priority, and skips the locking read entirely
    when none is due.

    MySQL has no LISTEN/NOTIFY, so an idle worker watches the highest task
    id instead of re-running the claim query: ``SELECT MAX(id)`` is answered
    from the end of the primary key (no rows are read), and a new row shows
    up within about 20 ms. Tasks that become due later, or are put back,
    are found by the regular claim every ``--sleep`` seconds.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._last_id: int | None = None
        self._probe: str | None = None
        # The two queries of due_priorities, per priority order.
        self._walks: dict[bool, tuple[str, str]] = {}

    def waiting_priorities(self, now: datetime) -> tuple[list[tuple[int, bool]], bool]:
        """The priorities of waiting tasks, best first, each with whether it
        holds a due task, and whether that is all of them (the walk stops
        after ``bands.MAX_STEPS`` priorities).

        One query per waiting priority and one more: each reads the first
        entry of the claim index after the previous priority, which is that
        priority's earliest task, and says whether it is due.
        """
        descending = app_settings.PRIORITY_DESCENDING
        if descending not in self._walks:
            quote = self.connection.ops.quote_name
            index = "background_task_claim_desc" if descending else "background_task_claim_asc"
            order = "DESC" if descending else "ASC"
            # FORCE INDEX: without fresh statistics MariaDB may read the
            # ``status`` prefix of the index as one long ref scan instead.
            select = (
                f"SELECT {quote('priority')}, {quote('run_at')} <= %s "
                f"FROM {quote(str(Task._meta.db_table))} FORCE INDEX ({index}) "
                f"WHERE {quote('status')} = %s"
            )
            after = f" AND {quote('priority')} {'<' if descending else '>'} %s"
            tail = f" ORDER BY {quote('priority')} {order}, {quote('run_at')} ASC LIMIT 1"
            self._walks[descending] = (select + tail, select + after + tail)
        first, following = self._walks[descending]
        moment = self.connection.ops.adapt_datetimefield_value(now)
        seen: list[tuple[int, bool]] = []
        with self.connection.cursor() as cursor:
            cursor.execute(first, [moment, status.WAITING])
            row = cursor.fetchone()
            while row is not None and len(seen) < bands.MAX_STEPS:
                priority, is_due = row
                seen.append((priority, bool(is_due)))
                cursor.execute(following, [moment, status.WAITING, priority])
                row = cursor.fetchone()
        return seen, row is None

    def due_priorities(self, now: datetime) -> list[int] | None:
        """The priorities that hold due waiting tasks, best first, or None
        if the queue has more than ``bands.MAX_STEPS`` priorities waiting
        (the claim then walks every priority in order, as it used to)."""
        seen, complete = self.waiting_priorities(now)
        return [priority for priority, is_due in seen if is_due] if complete else None

    def next_run_at(self, now: datetime) -> datetime | None:
        seen, _ = self.waiting_priorities(now)
        if not seen:
            return None
        quote = self.connection.ops.quote_name
        run_at = quote("run_at")
        # One seek per priority, as a UNION of single-row reads: MariaDB
        # would read every later task of ``priority IN (...)`` for a MIN().
        part = (
            f"(SELECT {run_at} FROM {quote(str(Task._meta.db_table))} "
            "FORCE INDEX (background_task_claim_asc) "
            f"WHERE {quote('status')} = %s AND {quote('priority')} = %s AND {run_at} > %s "
            f"ORDER BY {run_at} ASC LIMIT 1)"
        )
        sql = f"SELECT MIN(later.{run_at}) FROM ({' UNION ALL '.join([part] * len(seen))}) AS later"
        moment = self.connection.ops.adapt_datetimefield_value(now)
        params: list[Any] = []
        for priority, _ in seen:
            params += [status.WAITING, priority, moment]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return self.to_datetime(row[0] if row else None)

    def claimable(self, request: ClaimRequest) -> TaskQuerySet | None:
        due = self.due_priorities(request.now)
        if due == []:
            return None  # nothing is due: no locking read at all
        queryset = self.candidates(request)
        return queryset if due is None else queryset.filter(priority__in=due)

    def highest_id(self) -> int:
        if self._probe is None:
            table = self.connection.ops.quote_name(str(Task._meta.db_table))
            self._probe = f"SELECT MAX(id) FROM {table}"
        # The driver's own cursor: this runs every 20 ms while idle, and
        # Django's cursor wrapper would double its cost. Errors still come
        # out as Django's DatabaseError.
        with self.connection.wrap_database_errors:
            self.connection.ensure_connection()
            cursor = self.connection.connection.cursor()
            try:
                cursor.execute(self._probe)
                row = cursor.fetchone()
            finally:
                cursor.close()
        return int(row[0] or 0) if row else 0

    def before_claim(self) -> None:
        self._last_id = self.highest_id()

    def wait(self, timeout: float, stopping: threading.Event) -> None:
        deadline = time.monotonic() + timeout
        try:
            baseline = self._last_id if self._last_id is not None else self.highest_id()
            while not stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.highest_id() > baseline:
                    return
                stopping.wait(min(CHANGE_POLL_INTERVAL, remaining))
        except DatabaseError:
            # The database went away: return, and let the next claim meet the
            # error, where the worker backs off and reconnects.
            return
