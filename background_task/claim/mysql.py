"""Claiming on MySQL 8 and MariaDB 10.6+."""

from __future__ import annotations

from background_task.claim.skip_locked import SkipLockedClaimStrategy


class MySQLClaimStrategy(SkipLockedClaimStrategy):
    """SKIP LOCKED claims. InnoDB locks every index record a locking read
    scans, so the candidate query walks the (status, priority, run_at, id)
    index in order and stops at LIMIT rather than sorting a large set."""
