"""Choose the claim strategy for a database connection.

This package is the only place that looks at the database vendor.
"""

from __future__ import annotations

from django.db import connections

from background_task.store.claim.base import ClaimRequest, ClaimStrategy
from background_task.store.claim.generic import GenericClaimStrategy
from background_task.store.claim.mysql import MySQLClaimStrategy
from background_task.store.claim.postgresql import PostgreSQLClaimStrategy
from background_task.store.claim.sqlite import SQLiteClaimStrategy
from background_task.store.routing import queue_alias

__all__ = ["ClaimRequest", "ClaimStrategy", "get_strategy", "wake_workers"]


def get_strategy(using: str | None = None) -> ClaimStrategy:
    """Return the strategy for the connection ``using``."""
    using = queue_alias(using)
    connection = connections[using]
    skip_locked = connection.features.has_select_for_update_skip_locked
    if connection.vendor == "postgresql":
        return PostgreSQLClaimStrategy(connection)
    if connection.vendor == "mysql" and skip_locked:
        return MySQLClaimStrategy(connection)
    if connection.vendor == "sqlite" and SQLiteClaimStrategy.available():
        return SQLiteClaimStrategy(connection)
    return GenericClaimStrategy(connection)


def wake_workers(using: str | None = None) -> None:
    """Wake the idle workers of ``using`` now, where the database can push
    (PostgreSQL's NOTIFY, delivered on commit); elsewhere they notice
    changes on their own within their polling interval."""
    using = queue_alias(using)
    connection = connections[using]
    if connection.vendor == "postgresql":
        PostgreSQLClaimStrategy.notify(connection)
