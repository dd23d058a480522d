"""Claiming on SQLite, where one writer at a time holds the database."""

from __future__ import annotations

from background_task.claim.generic import GenericClaimStrategy


class SQLiteClaimStrategy(GenericClaimStrategy):
    """A single UPDATE statement: SQLite takes the write lock for it, so the
    subquery and the update see the same data and claims never overlap.

    A busy database ("database is locked" after the connection's timeout)
    surfaces as OperationalError, which the worker treats like any other
    passing database error.
    """
