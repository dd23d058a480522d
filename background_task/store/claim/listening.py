"""LISTEN connections for PostgreSQL wake-ups, with psycopg 3 or psycopg2.

Django supports both drivers; a worker listens with whichever the project
uses (psycopg 3 first, as Django picks it first).
"""

from __future__ import annotations

import select
from typing import Any


class Listener:
    """An autocommit connection (the driver's own) that LISTENs on one channel."""

    connection: Any

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification; True if one
        came (those that came with it are consumed too)."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return bool(self.connection.closed)

    def close(self) -> None:
        self.connection.close()


class Psycopg3Listener(Listener):
    def __init__(self, params: dict[str, Any], channel: str) -> None:
        import psycopg

        self.connection = psycopg.connect(**params, autocommit=True)
        self.connection.execute(f"LISTEN {channel}")

    def wait(self, timeout: float) -> bool:
        woken = False
        for _ in self.connection.notifies(timeout=timeout, stop_after=1):
            woken = True
        if woken:
            # Drain what else arrived, so the next wait does not wake for it.
            # (Only once the first generator is done: it holds the
            # connection's lock, and a nested notifies() would deadlock.)
            for _ in self.connection.notifies(timeout=0):
                pass
        return woken


class Psycopg2Listener(Listener):
    def __init__(self, params: dict[str, Any], channel: str) -> None:
        import psycopg2  # type: ignore[import-untyped,unused-ignore]

        self.connection = psycopg2.connect(**params)
        self.connection.autocommit = True
        with self.connection.cursor() as cursor:
            cursor.execute(f"LISTEN {channel}")

    def wait(self, timeout: float) -> bool:
        connection = self.connection
        if not connection.notifies:
            readable, _, _ = select.select([connection], [], [], timeout)
            if not readable:
                return False
        connection.poll()  # reads what the server sent; raises if the connection broke
        woken = bool(connection.notifies)
        connection.notifies.clear()
        return woken


def open_listener(params: dict[str, Any], channel: str) -> Listener:
    """A connection made with Django's connection ``params``, listening on
    ``channel``, through the driver Django uses."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if is_psycopg3:
        return Psycopg3Listener(params, channel)
    return Psycopg2Listener(params, channel)
