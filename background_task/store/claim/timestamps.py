"""Reading the claimed rows' timestamps with psycopg's C parser.

On psycopg 3, Django registers its own loader for ``timestamptz`` values: a
Python subclass of psycopg's loader that sets each value's time zone to the
connection's (UTC, the ``TIME_ZONE`` of the database, or none without
``USE_TZ``). Being a Python subclass, it parses in Python as well, and a
claimed task carries up to ten timestamps: parsing them was a tenth of a
worker's time per no-op task. psycopg swaps its own loader for a C version
when it is registered, so the claim's cursor registers that one, and the
rows then get the time zone Django's loader would have given them.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

#: PostgreSQL's type id of ``timestamp with time zone``, Django's DateTimeField.
TIMESTAMPTZ_OID = 1184


def _c_loader() -> type | None:
    """psycopg's ``timestamptz`` loader, when psycopg 3 runs its C implementation."""
    try:
        import psycopg
        from psycopg.types.datetime import TimestamptzLoader
    except ImportError:  # psycopg2: its timestamps are parsed in C already
        return None
    return None if psycopg.pq.__impl__ == "python" else TimestamptzLoader


class FastTimestamps:
    """Load one cursor's ``timestamptz`` values in C, and give them Django's time zone."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.loader = _c_loader()

    def use(self, cursor: Any) -> bool:
        """Register the C loader on ``cursor`` (a Django cursor); whether it could.

        Only that cursor changes: psycopg copies the connection's adapters
        for a cursor that registers its own.
        """
        adapters = getattr(getattr(cursor, "cursor", None), "adapters", None)
        if self.loader is None or adapters is None:
            return False
        adapters.register_loader("timestamptz", self.loader)
        return True

    def restore(self, cursor: Any, rows: list[Any]) -> list[Any]:
        """``rows`` (as ``cursor`` returned them) with each timestamp in the
        time zone Django's loader gives it (naive without ``USE_TZ``)."""
        if not rows:
            return rows
        positions = [
            index
            for index, column in enumerate(cursor.description)
            if column.type_code == TIMESTAMPTZ_OID
        ]
        if not positions:
            return rows
        zone = self.connection.timezone
        restored = []
        for row in rows:
            values = list(row)
            for index in positions:
                value = values[index]
                if value is not None:
                    values[index] = value.replace(tzinfo=zone)
            restored.append(values)
        return restored
