"""Claiming on SQLite, where one writer at a time holds the database."""

from __future__ import annotations

import sqlite3

from background_task.claim.returning import ReturningClaimStrategy


class SQLiteClaimStrategy(ReturningClaimStrategy):
    """One ``UPDATE ... RETURNING`` statement: SQLite takes the write lock for
    it, so the subquery and the update see the same data and claims never
    overlap. Needs SQLite 3.35+; older versions use the generic strategy.

    A busy database ("database is locked" after the connection's timeout)
    surfaces as OperationalError, which the worker treats like any other
    passing database error.
    """

    @staticmethod
    def available() -> bool:
        return sqlite3.sqlite_version_info >= (3, 35, 0)
