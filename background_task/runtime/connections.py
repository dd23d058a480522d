"""Database connections of a long-running worker, recycled as Django does per request."""

from __future__ import annotations

import threading
import time

from django.db import close_old_connections, connections

CONNECTION_CHECK_INTERVAL = 5.0  # seconds between connection checks while busy

_connection_checks = threading.local()


def recycle_connections() -> None:
    """Close connections that failed or outlived CONN_MAX_AGE, as Django does per request.

    Checking after every task would, with the default ``CONN_MAX_AGE = 0``,
    reconnect for every task; so a busy worker checks every few seconds,
    and at once after a database error.
    """
    now = time.monotonic()
    last = getattr(_connection_checks, "at", float("-inf"))
    failed = any(conn.errors_occurred for conn in connections.all(initialized_only=True))
    if failed or now - last >= CONNECTION_CHECK_INTERVAL:
        close_old_connections()
        _connection_checks.at = now
