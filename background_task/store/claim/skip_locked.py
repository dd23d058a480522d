"""Claiming with ``SELECT ... FOR UPDATE SKIP LOCKED``."""

from __future__ import annotations

from django.db import transaction

from background_task.store.claim.base import ClaimRequest, ClaimStrategy
from background_task.store.models import Task, TaskQuerySet


class SkipLockedClaimStrategy(ClaimStrategy):
    """Lock candidate rows, skipping rows other workers are locking, then mark them.

    Concurrent workers each get disjoint batches without waiting for each
    other. The locks last only for the short claim transaction.
    """

    supports_skip_locked = True

    def claimable(self, request: ClaimRequest) -> TaskQuerySet | None:
        """The candidates to lock, or None when it is known that none is due."""
        return self.candidates(request)

    def claim_ids(self, request: ClaimRequest, token: str) -> list[int]:
        alias = self.connection.alias
        candidates = self.claimable(request)
        if candidates is None:
            return []
        with transaction.atomic(using=alias):
            ids = list(
                candidates.select_for_update(skip_locked=True).values_list("id", flat=True)[
                    : request.limit
                ]
            )
            if not ids:
                return []
            values = self.claim_values(request, token)
            updated = Task.objects.using(alias).filter(id__in=ids).update(**values)
            return ids if updated else []
