"""Claiming in one statement: ``UPDATE ... WHERE id IN (...) RETURNING *``."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models.functions import Coalesce

from background_task.core import status
from background_task.core.conf import app_settings
from background_task.store.claim.bands import PriorityBands
from background_task.store.claim.base import ClaimRequest, ClaimStrategy
from background_task.store.models import Task, tasks_from_db
from background_task.store.models.keys import released_key_sql

#: Stands for "now" while a claim statement is compiled; the positions where
#: it lands among the parameters are where each claim puts its own time.
_SENTINEL_NOW = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
#: Claim statements kept per strategy (one per distinct request shape).
_STATEMENT_CACHE_SIZE = 64


@dataclass(frozen=True)
class ClaimStatement:
    """A compiled claim: SQL text, parameters, and where the variable ones go."""

    sql: str
    params: tuple[Any, ...]
    now_positions: tuple[int, ...]  # parameters that hold the claim time
    token_position: int
    worker_position: int


class ReturningClaimStrategy(ClaimStrategy):
    """Mark the candidates and read them back in a single statement.

    One round trip instead of three. Subclasses say how the candidate
    subquery must end (PostgreSQL adds ``FOR UPDATE SKIP LOCKED``).

    The statement is compiled by the ORM once per request shape (task
    names, queues, backends, batch size, priority order) and kept, so a
    claim costs one ``execute`` plus reading the rows: compiling the query
    took as long as running it on PostgreSQL, and an idle worker's pick-up
    latency is mostly this claim.
    """

    candidate_suffix = ""
    #: How the UPDATE selects the candidate ids; ``{id}`` and ``{subquery}`` are filled in.
    membership = "{id} IN ({subquery})"
    #: Written after the UPDATE's table name (SQLite: ``NOT INDEXED``).
    target_suffix = ""
    #: Whether the UPDATE repeats ``status = waiting`` for the rows it writes.
    recheck_status = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._statements: dict[tuple[Any, ...], ClaimStatement] = {}
        self._fields = tuple(Task._meta.concrete_fields)
        self._attnames = [field.attname for field in self._fields]
        self._compiler: Any = None  # for its column converters, made on first use
        self._converters: dict[int, Any] = {}

    def claim(self, request: ClaimRequest) -> list[Task]:
        if request.empty:
            return []
        self.before_claim()
        statement = self.statement(request)
        params = self.parameters(statement, request.now, uuid.uuid4().hex, request.worker_id)
        with self.connection.cursor() as cursor:
            rows = self.run(cursor, statement.sql, params)
        tasks = self.tasks_from_rows(rows)
        sign = -1 if app_settings.PRIORITY_DESCENDING else 1
        tasks.sort(key=lambda task: (sign * task.priority, task.run_at, task.pk))
        return tasks

    def parameters(
        self, statement: ClaimStatement, now: datetime, token: str, worker_id: str
    ) -> list[Any]:
        """The parameters of one claim through ``statement``."""
        params = list(statement.params)
        adapted = self.adapt(now)
        for position in statement.now_positions:
            params[position] = adapted
        params[statement.token_position] = token
        params[statement.worker_position] = worker_id
        return params

    def run(self, cursor: Any, sql: str, params: list[Any]) -> list[Any]:
        """Execute a compiled claim; the rows it returns."""
        cursor.execute(sql, params)
        return list(cursor.fetchall())

    def statement(self, request: ClaimRequest) -> ClaimStatement:
        """The compiled claim for this request's shape, compiled on first use."""
        key = (
            tuple(request.names),
            None if request.queues is None else tuple(request.queues),
            tuple(request.backends),
            tuple(request.paused),
            request.limit,
            app_settings.BACKGROUND_TASK_PRIORITY_ORDERING,
            request.now.tzinfo is None,
        )
        statement = self._statements.get(key)
        if statement is None:
            if len(self._statements) >= _STATEMENT_CACHE_SIZE:
                self._statements.clear()
            statement = self._statements[key] = self.compile(request)
        return statement

    def compile(self, request: ClaimRequest) -> ClaimStatement:
        """Build the UPDATE for ``request`` with placeholders for time, token and worker."""
        sentinel = _SENTINEL_NOW
        if request.now.tzinfo is None:
            sentinel = sentinel.replace(tzinfo=None)
        shaped = dataclasses.replace(request, now=sentinel)
        quote = self.connection.ops.quote_name
        subquery, sub_params = self.candidate_sql(shaped)
        marker = self.adapt(sentinel)
        assignments: list[str] = []
        params: list[Any] = []
        now_positions: list[int] = []
        token_position = worker_position = -1
        for column, value in self.claim_values(shaped, "").items():
            if column == "unique_key":
                expression, expression_params = released_key_sql(quote)
                assignments.append(f"{quote(column)} = {expression}")
                params.extend(expression_params)
                continue
            if isinstance(value, Coalesce):
                assignments.append(f"{quote(column)} = COALESCE({quote(column)}, %s)")
            else:
                assignments.append(f"{quote(column)} = %s")
            if column == "claim_token":
                token_position = len(params)
            elif column == "locked_by":
                worker_position = len(params)
            elif isinstance(value, (Coalesce, datetime)):
                now_positions.append(len(params))
            params.append(self.adapt(value) if not isinstance(value, Coalesce) else None)
        for value in sub_params:
            if value in (marker, sentinel):
                now_positions.append(len(params))
            params.append(value)
        condition = self.membership.format(id=quote("id"), subquery=subquery)
        if self.recheck_status:
            condition += f" AND {quote('status')} = %s"
            params.append(status.WAITING)
        columns = ", ".join(quote(str(field.column)) for field in self._fields)
        sql = (
            f"UPDATE {quote(str(Task._meta.db_table))}{self.target_suffix} "
            f"SET {', '.join(assignments)} "
            f"WHERE {condition} RETURNING {columns}"
        )
        return ClaimStatement(
            sql, tuple(params), tuple(now_positions), token_position, worker_position
        )

    def candidate_sql(self, request: ClaimRequest) -> tuple[str, tuple[Any, ...]]:
        """The SELECT of the ids to claim, in claim order, and its parameters."""
        query = self.candidates(request).values("id")[: request.limit].query
        sql, params = query.get_compiler(self.connection.alias).as_sql()
        return sql + self.candidate_suffix, tuple(params)

    def next_run_at(self, now: datetime) -> datetime | None:
        bands = PriorityBands(self.connection, app_settings.PRIORITY_DESCENDING, 1)
        sql, params = bands.earliest_later(self.adapt(now))
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return self.to_datetime(row[0] if row else None)

    def tasks_from_rows(self, rows: list[Any]) -> list[Task]:
        """Tasks from RETURNING rows, converted as the ORM's compiler converts
        the columns of a query (its own converters, found once)."""
        if self._compiler is None:
            self._compiler = Task.objects.none().query.get_compiler(self.connection.alias)
            table = str(Task._meta.db_table)
            self._converters = self._compiler.get_converters(
                [field.get_col(table) for field in self._fields]
            )
        if self._converters:
            rows = list(self._compiler.apply_converters(rows, self._converters))
        return tasks_from_db(self.connection.alias, self._attnames, rows)

    def adapt(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return self.connection.ops.adapt_datetimefield_value(value)
        return value
