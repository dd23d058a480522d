"""Claiming on PostgreSQL."""

from __future__ import annotations

from background_task.claim.returning import ReturningClaimStrategy


class PostgreSQLClaimStrategy(ReturningClaimStrategy):
    """``UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED)) RETURNING *``.

    One statement and one round trip. Concurrent workers skip each other's
    candidate rows instead of waiting for them, and READ COMMITTED re-checks
    ``status`` on a row that changed between the scan and the lock.
    """

    supports_skip_locked = True
    candidate_suffix = " FOR UPDATE SKIP LOCKED"
    # Not ``IN (subquery)``: the planner may re-scan that subquery, and each
    # re-scan locks further rows, so more than LIMIT rows get claimed.
    # ``= ANY(ARRAY(...))`` evaluates it exactly once.
    membership = "{id} = ANY(ARRAY({subquery}))"
