"""Claiming on SQLite, where one writer at a time holds the database."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from background_task.core.conf import app_settings
from background_task.store.claim.bands import PriorityBands, where
from background_task.store.claim.base import ClaimRequest
from background_task.store.claim.returning import ReturningClaimStrategy

CHANGE_POLL_INTERVAL = 0.005  # seconds between PRAGMA data_version checks when idle


class SQLiteClaimStrategy(ReturningClaimStrategy):
    """One ``UPDATE ... RETURNING`` statement: SQLite takes the write lock for
    it, so the subquery and the update see the same data and claims never
    overlap. Needs SQLite 3.35+; older versions use the generic strategy.

    An idle worker watches ``PRAGMA data_version``, which changes whenever
    another connection commits, instead of re-running the claim query: new
    tasks are picked up within milliseconds for a few microseconds of CPU per
    check.

    The UPDATE's own table reference is ``NOT INDEXED``: without planner
    statistics (a database nobody ran ANALYZE on) SQLite would otherwise
    find the claimed rows by walking the status index over every waiting
    task, a cost that grows with the queue, instead of by rowid.

    The candidates are read priority by priority, each as a ``run_at``
    range (see :mod:`background_task.store.claim.bands`), so tasks scheduled for
    later are not read at all.

    A busy database ("database is locked" after the connection's timeout)
    surfaces as OperationalError, which the worker treats like any other
    passing database error.
    """

    target_suffix = " NOT INDEXED"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._version: int | None = None

    @staticmethod
    def available() -> bool:
        return sqlite3.sqlite_version_info >= (3, 35, 0)

    def candidate_sql(self, request: ClaimRequest) -> tuple[str, tuple[Any, ...]]:
        base = self.candidates(request)
        bands = PriorityBands(self.connection, app_settings.PRIORITY_DESCENDING, request.limit)
        cte, params = bands.cte(where(base, bands.at_band))
        # SQLite reads ``priority IN (SELECT v FROM claim_band)`` as one index
        # range per listed priority, in index order, so the LIMIT stops it.
        visited, visited_params = bands.rows(where(base, bands.in_bands))
        beyond, beyond_params = bands.rows(where(base, bands.beyond_bands))
        sql = cte + bands.pick(visited, beyond)
        return sql, (*params, *visited_params, *beyond_params)

    def data_version(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            return int(cursor.fetchone()[0])

    def before_claim(self) -> None:
        self._version = self.data_version()

    def wait(self, timeout: float, stopping: threading.Event) -> None:
        deadline = time.monotonic() + timeout
        baseline = self._version if self._version is not None else self.data_version()
        while not stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.data_version() != baseline:
                return
            stopping.wait(min(CHANGE_POLL_INTERVAL, remaining))
