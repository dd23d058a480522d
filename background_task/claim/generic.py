"""Claiming on any database: one UPDATE over a sliced subquery."""

from __future__ import annotations

from typing import Any

from background_task import status
from background_task.claim.base import ClaimRequest, ClaimStrategy
from background_task.models import Task


class GenericClaimStrategy(ClaimStrategy):
    """``UPDATE ... WHERE id IN (SELECT id ... LIMIT n) AND status = 'waiting'``.

    One statement, so it is atomic on its own. Where two workers race for the
    same rows, the database serialises the UPDATEs and the loser re-checks
    ``status`` and claims fewer rows; nobody gets a row twice.
    """

    def claim_ids(self, request: ClaimRequest, token: str) -> int:
        ids: Any = self.candidates(request).values("id")[: request.limit]
        if not self.connection.features.allow_sliced_subqueries_with_in:
            # Read the ids first; the status condition below keeps it a
            # compare-and-set, so a row another worker took is not taken again.
            ids = [row["id"] for row in ids]
        updated: int = (
            Task.objects.using(self.connection.alias)
            .filter(id__in=ids, status=status.WAITING)
            .update(**self.claim_values(request, token))
        )
        return updated
