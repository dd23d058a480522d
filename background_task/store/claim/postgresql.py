"""Claiming on PostgreSQL, with LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connections

from background_task.core.conf import app_settings
from background_task.store.claim.bands import BAND, PriorityBands, where
from background_task.store.claim.base import ClaimRequest
from background_task.store.claim.listening import Listener, open_listener
from background_task.store.claim.prepared import PreparedStatements
from background_task.store.claim.returning import ReturningClaimStrategy
from background_task.store.claim.timestamps import FastTimestamps

logger = logging.getLogger("background_task.worker")

CHANNEL = "background_task"  # NOTIFY channel of the insert trigger (migration 0004)
LISTEN_SLICE = 0.5  # seconds; how often a listening worker checks whether it must stop
#: Seconds between an idle worker's claims when it does not LISTEN (behind a
#: transaction pooler, or BACKGROUND_TASK_LISTEN_DATABASE = False).
POLL_INTERVAL = 0.5


class PostgreSQLClaimStrategy(ReturningClaimStrategy):
    """``UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED)) RETURNING *``.

    One statement and one round trip. Concurrent workers skip each other's
    candidate rows instead of waiting for them, and READ COMMITTED re-checks
    ``status`` on a row that changed between the scan and the lock.

    The candidates are read priority by priority, each as a ``run_at``
    range (see :mod:`background_task.store.claim.bands`): a LATERAL subquery per
    priority the walk visits, since PostgreSQL before 17 would only filter
    on ``priority = ANY(...)`` rather than seek with it.

    An idle worker LISTENs on its own connection for the
    notification a trigger sends when tasks are inserted; PostgreSQL
    delivers it when the enqueuing transaction commits. A notification is
    only a hint: the worker then claims through SQL as always. If
    listening fails, the worker polls.

    Outside transaction blocks the claim statement is PREPAREd once per
    session (see :mod:`background_task.store.claim.prepared`): parsing and
    planning it cost more than running it. The claimed rows' timestamps
    are parsed in C (see :mod:`background_task.store.claim.timestamps`).
    """

    supports_skip_locked = True
    supports_notify = True
    candidate_suffix = " FOR UPDATE SKIP LOCKED"
    # Not ``IN (subquery)``: the planner may re-scan that subquery, and each
    # re-scan locks further rows, so more than LIMIT rows get claimed.
    # ``= ANY(ARRAY(...))`` evaluates it exactly once.
    membership = "{id} = ANY(ARRAY({subquery}))"
    # The locking subquery has already re-checked ``status`` on the newest
    # version of each row it locked, and holds the locks. Repeating the test
    # in the UPDATE only gives the planner a second way in: with stale
    # statistics that say few tasks wait, it read the status index over the
    # whole queue instead of the primary key.
    recheck_status = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener: Listener | None = None
        self._listen_failed_at = float("-inf")
        # Set by the first wait(): only a worker that goes idle listens, so
        # one-off claims (tasks.run_next_task()) open no extra connection.
        self._listening = False
        self.prepared = PreparedStatements(self.connection)
        self.timestamps = FastTimestamps(self.connection)

    @staticmethod
    def notify(connection: Any) -> None:
        """Send the notification idle workers listen for (on commit)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])

    def candidate_sql(self, request: ClaimRequest) -> tuple[str, tuple[Any, ...]]:
        base = self.candidates(request)
        bands = PriorityBands(self.connection, app_settings.PRIORITY_DESCENDING, request.limit)
        at_band = where(base, bands.at_band)
        cte, params = bands.cte(at_band)
        lane, lane_params = bands.rows(at_band, self.candidate_suffix)
        visited = (
            f"SELECT lane.* FROM {BAND} CROSS JOIN LATERAL ({lane}) AS lane "
            f"WHERE {BAND}.v IS NOT NULL"
        )
        beyond, beyond_params = bands.rows(where(base, bands.beyond_bands), self.candidate_suffix)
        sql = cte + bands.pick(visited, beyond)
        return sql, (*params, *lane_params, *beyond_params)

    def run(self, cursor: Any, sql: str, params: list[Any]) -> list[Any]:
        fast = self.timestamps.use(cursor)
        if self.prepared.usable():
            rows = self.prepared.fetchall(cursor, sql, params)
        else:
            rows = super().run(cursor, sql, params)
        return self.timestamps.restore(cursor, rows) if fast else rows

    def warm(self) -> None:
        super().warm()
        if self.prepared.usable():
            with self.connection.cursor() as cursor:
                self.prepared.prepare_latest(cursor)

    def listener(self) -> Listener | None:
        """The LISTEN connection, opened on first use (so after any fork)."""
        if self._listener is not None and not self._listener.closed:
            return self._listener
        if time.monotonic() - self._listen_failed_at < 30:
            return None
        params = self.listen_params()
        if params is None:
            return None
        try:
            listener = open_listener(params, CHANNEL)
        except Exception as exc:  # any failure means: poll instead
            self._listen_failed_at = time.monotonic()
            logger.warning("Cannot LISTEN for new tasks (%s); polling instead.", exc)
            return None
        self._listener = listener
        return listener

    def listen_params(self) -> dict[str, Any] | None:
        """The connection parameters to LISTEN with, or None to poll.

        LISTEN needs a session of its own: behind a pooler in transaction
        mode (which Django projects mark with DISABLE_SERVER_SIDE_CURSORS)
        the server connection goes back to the pool after each statement
        and the notifications with it. BACKGROUND_TASK_LISTEN_DATABASE names
        a direct connection to listen on instead, or False to always poll.
        """
        choice = app_settings.LISTEN_DATABASE
        if choice is False:
            return None
        if isinstance(choice, str):
            params: dict[str, Any] = connections[choice].get_connection_params()
            return params
        if self.connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
            return None
        params = self.connection.get_connection_params()
        return params

    def _announce(self, listening: bool) -> None:
        """Say once, at the first idle wait, how this worker learns of new tasks."""
        choice = app_settings.LISTEN_DATABASE
        if listening:
            where = f"database {choice!r}" if isinstance(choice, str) else "its own database"
            logger.info("Waiting for new tasks with LISTEN on %s.", where)
        elif choice is False:
            logger.info(
                "BACKGROUND_TASK_LISTEN_DATABASE is False: looking for new tasks every %gs "
                "while idle.",
                POLL_INTERVAL,
            )
        elif self.listen_params() is None:
            logger.info(
                "Database %r sets DISABLE_SERVER_SIDE_CURSORS (a transaction pooler): looking "
                "for new tasks every %gs while idle; set BACKGROUND_TASK_LISTEN_DATABASE to "
                "the alias of a direct connection to be woken by LISTEN instead.",
                self.connection.alias,
                POLL_INTERVAL,
            )

    def before_claim(self) -> None:
        # Listen before claiming: a task committed after an empty claim then
        # leaves a notification waiting, and wait() returns at once.
        if self._listening:
            self.listener()

    def wait(self, timeout: float, stopping: threading.Event) -> None:
        if not self._listening:
            self._listening = True
            first = self.listener()
            self._announce(first is not None)
            if first is not None:
                return  # claim once more, now that notifications cannot be missed
        listener = self.listener()
        if listener is None:
            if self.listen_params() is None:  # not listening by choice: poll often
                timeout = min(timeout, POLL_INTERVAL)
            super().wait(timeout, stopping)
            return
        deadline = time.monotonic() + timeout
        try:
            while not stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if listener.wait(min(LISTEN_SLICE, remaining)):
                    return
        except Exception as exc:  # the listener broke: poll until it is back
            logger.warning("Lost the LISTEN connection (%s); polling.", exc)
            self.close()
            self._listen_failed_at = time.monotonic()

    def close(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None
