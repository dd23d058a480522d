"""Claiming on PostgreSQL."""

from __future__ import annotations

from background_task.claim.skip_locked import SkipLockedClaimStrategy


class PostgreSQLClaimStrategy(SkipLockedClaimStrategy):
    """SKIP LOCKED claims; READ COMMITTED re-checks a row's status if it changed
    between the scan and the lock."""
