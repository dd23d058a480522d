"""Claiming on MySQL 8 and MariaDB 10.6+."""

from __future__ import annotations

import threading
import time

from django.db import DatabaseError

from background_task.claim.skip_locked import SkipLockedClaimStrategy
from background_task.models import Task

CHANGE_POLL_INTERVAL = 0.02  # seconds between checks for new rows when idle


class MySQLClaimStrategy(SkipLockedClaimStrategy):
    """SKIP LOCKED claims. InnoDB locks every index record a locking read
    scans, so the candidate query walks the (status, priority, run_at, id)
    index in order and stops at LIMIT rather than sorting a large set.

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
