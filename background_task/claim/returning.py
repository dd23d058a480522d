"""Claiming in one statement: ``UPDATE ... WHERE id IN (...) RETURNING *``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models.functions import Coalesce

from background_task import status
from background_task.claim.base import ClaimRequest, ClaimStrategy
from background_task.conf import app_settings
from background_task.models import Task


class ReturningClaimStrategy(ClaimStrategy):
    """Mark the candidates and read them back in a single statement.

    One round trip instead of three. Subclasses say how the candidate
    subquery must end (PostgreSQL adds ``FOR UPDATE SKIP LOCKED``).
    """

    candidate_suffix = ""
    #: How the UPDATE selects the candidate ids; ``{id}`` and ``{subquery}`` are filled in.
    membership = "{id} IN ({subquery})"

    def claim(self, request: ClaimRequest) -> list[Task]:
        if request.empty:
            return []
        self.before_claim()
        token = uuid.uuid4().hex
        quote = self.connection.ops.quote_name
        subquery, sub_params = (
            self.candidates(request).values("id")[: request.limit].query.sql_with_params()
        )
        values = self.claim_values(request, token)
        assignments, params = [], []
        for column, value in values.items():
            if isinstance(value, Coalesce):
                assignments.append(f"{quote(column)} = COALESCE({quote(column)}, %s)")
                params.append(self.adapt(request.now))
            else:
                assignments.append(f"{quote(column)} = %s")
                params.append(self.adapt(value))
        columns = ", ".join(quote(str(field.column)) for field in Task._meta.concrete_fields)
        chosen = self.membership.format(id=quote("id"), subquery=subquery + self.candidate_suffix)
        sql = (
            f"UPDATE {quote(str(Task._meta.db_table))} SET {', '.join(assignments)} "
            f"WHERE {chosen} AND {quote('status')} = %s RETURNING {columns}"
        )
        rows = list(
            Task.objects.using(self.connection.alias).raw(
                sql, [*params, *sub_params, status.WAITING]
            )
        )
        sign = -1 if app_settings.PRIORITY_DESCENDING else 1
        rows.sort(key=lambda task: (sign * task.priority, task.run_at, task.pk))
        return rows

    def adapt(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return self.connection.ops.adapt_datetimefield_value(value)
        return value
