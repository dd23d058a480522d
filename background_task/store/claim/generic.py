"""Claiming on any database: read the candidate ids, then one compare-and-set UPDATE."""

from __future__ import annotations

from background_task.core import status
from background_task.store.claim.base import ClaimRequest, ClaimStrategy
from background_task.store.models import Task


class GenericClaimStrategy(ClaimStrategy):
    """``SELECT id ... LIMIT n``, then ``UPDATE ... WHERE id IN (...) AND status = 'waiting'``.

    Where two workers race for the same rows, the database serialises the
    UPDATEs and the loser re-checks ``status`` and claims fewer rows; nobody
    gets a row twice.
    """

    def claim_ids(self, request: ClaimRequest, token: str) -> list[int]:
        # The ids are read first, so the claimed rows can be read back by
        # primary key; the status condition keeps the UPDATE a
        # compare-and-set, so a row another worker took is not taken again.
        ids = list(self.candidates(request).values_list("id", flat=True)[: request.limit])
        if not ids:
            return []
        updated = (
            Task.objects.using(self.connection.alias)
            .filter(id__in=ids, status=status.WAITING)
            .update(**self.claim_values(request, token))
        )
        return ids if updated else []
