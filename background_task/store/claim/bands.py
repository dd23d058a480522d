"""Claim queries that read each priority's due tasks as one ``run_at`` range.

The claim index is ``(status, priority, run_at, id)``. A query that orders
by priority and keeps ``run_at <= now`` can walk it in order, but it tests
``run_at`` row by row: every task of a higher priority that is due later,
and every later task of the priority it is filling its batch from, is read
and thrown away. With a large schedule of future tasks each claim read all
of them (26 ms per empty claim behind 200,000 tasks due tomorrow on SQLite).

With ``priority`` fixed, ``run_at <= now`` is a range of that index, and the
walk stops at the first future task. So the queries here first walk the
distinct priorities of waiting tasks, best first, one index seek each (a
recursive CTE; SQLite and PostgreSQL have no skip scan of their own), and
stop as soon as the priorities seen hold a full batch of due tasks. The
claim then reads due tasks only from those priorities.

A queue with very many distinct priorities would make that walk long, so
it stops after ``MAX_STEPS`` priorities; what the claim still needs then
comes from the plain ordered walk over the lower priorities, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from background_task.core import status
from background_task.store.models import Task, TaskQuerySet

#: Name of the recursive CTE of priorities, as the claim SQL refers to it.
BAND = "claim_band"
#: Priorities the walk visits at most before falling back to the plain walk.
MAX_STEPS = 32


def where(queryset: TaskQuerySet, sql: str) -> TaskQuerySet:
    """``queryset`` restricted by a raw SQL condition without parameters."""
    return queryset.filter(RawSQL(sql, (), output_field=BooleanField()))


@dataclass(frozen=True)
class PriorityBands:
    """The SQL pieces of a claim that reads due tasks priority by priority.

    ``descending`` is the claim's priority order; ``limit`` the batch size.
    """

    connection: BaseDatabaseWrapper
    descending: bool
    limit: int

    def quote(self, name: str) -> str:
        return str(self.connection.ops.quote_name(name))

    @property
    def column(self) -> str:
        """The priority column, qualified with the task table."""
        return f"{self.quote(str(Task._meta.db_table))}.{self.quote('priority')}"

    @property
    def below(self) -> str:
        """The comparison that means "after, in claim order"."""
        return "<" if self.descending else ">"

    def next_priority(self, after: str | None) -> str:
        """A scalar subquery: the best waiting priority after ``after`` (SQL), or the best."""
        table, priority = self.quote(str(Task._meta.db_table)), self.quote("priority")
        condition = f"{self.quote('status')} = %s"
        if after is not None:
            condition += f" AND {priority} {self.below} {after}"
        order = "DESC" if self.descending else "ASC"
        return (
            f"(SELECT {priority} FROM {table} WHERE {condition} "
            f"ORDER BY {priority} {order} LIMIT 1)"
        )

    def cte(self, due_at_band: TaskQuerySet) -> tuple[str, list[Any]]:
        """``WITH RECURSIVE claim_band(v, found, step) AS (...)``.

        Each row is a waiting priority ``v`` (best first), with ``found``
        due tasks in the priorities before it. ``due_at_band`` is the
        claim's candidate query restricted to ``priority = claim_band.v``;
        it is counted up to ``limit`` per priority.
        """
        counted, counted_params = self.compiled(due_at_band.values("id")[: self.limit])
        sql = (
            f"WITH RECURSIVE {BAND}(v, found, step) AS ("
            f"SELECT {self.next_priority(None)}, 0, 0 "
            "UNION ALL "
            f"SELECT {self.next_priority(f'{BAND}.v')}, "
            f"{BAND}.found + CAST((SELECT COUNT(*) FROM ({counted}) AS band_due) AS INTEGER), "
            f"{BAND}.step + 1 "
            f"FROM {BAND} WHERE {BAND}.v IS NOT NULL AND {BAND}.found < {self.limit:d} "
            f"AND {BAND}.step < {MAX_STEPS:d}"
            ") "
        )
        return sql, [status.WAITING, status.WAITING, *counted_params]

    def earliest_later(self, now: Any) -> tuple[str, list[Any]]:
        """The earliest ``run_at`` after ``now`` (adapted) among waiting
        tasks of the first ``MAX_STEPS`` priorities, one index seek each:
        a query with one row and column, NULL if there is none."""
        table = self.quote(str(Task._meta.db_table))
        status_, priority = self.quote("status"), self.quote("priority")
        run_at = self.quote("run_at")
        first = (
            f"(SELECT {run_at} FROM {table} WHERE {status_} = %s AND {priority} = {BAND}.v "
            f"AND {run_at} > %s ORDER BY {run_at} ASC LIMIT 1)"
        )
        sql = (
            f"WITH RECURSIVE {BAND}(v, step) AS ("
            f"SELECT {self.next_priority(None)}, 0 "
            "UNION ALL "
            f"SELECT {self.next_priority(f'{BAND}.v')}, {BAND}.step + 1 "
            f"FROM {BAND} WHERE {BAND}.v IS NOT NULL AND {BAND}.step < {MAX_STEPS:d}"
            f") SELECT MIN({first}) FROM {BAND} WHERE {BAND}.v IS NOT NULL"
        )
        return sql, [status.WAITING, status.WAITING, status.WAITING, now]

    @property
    def at_band(self) -> str:
        """Condition: the task's priority is the walk's current one (correlated)."""
        return f"{self.column} = {BAND}.v"

    @property
    def in_bands(self) -> str:
        """Condition: the task's priority is one the walk visited."""
        return f"{self.column} IN (SELECT v FROM {BAND})"

    @property
    def beyond_bands(self) -> str:
        """Condition: the walk stopped early, and the task's priority comes after it."""
        cut = f"(SELECT v FROM {BAND} WHERE step = {MAX_STEPS:d} AND found < {self.limit:d})"
        return f"{self.column} {self.below} {cut}"

    def compiled(self, queryset: QuerySet[Any, Any]) -> tuple[str, Any]:
        """``queryset``'s SQL for this connection (``sql_with_params()`` would
        compile it for the default database, whatever it runs on)."""
        sql, params = queryset.query.get_compiler(self.connection.alias).as_sql()
        return sql, params

    def rows(self, queryset: TaskQuerySet, suffix: str = "") -> tuple[str, list[Any]]:
        """``queryset``'s first ``limit`` tasks as (id, priority, run_at) rows,
        wrapped so that it can be one side of a UNION (``suffix`` may lock)."""
        sql, params = self.compiled(queryset.values("id", "priority", "run_at")[: self.limit])
        return f"SELECT * FROM ({sql}{suffix}) AS band_rows", list(params)

    def pick(self, first: str, second: str) -> str:
        """The ids of the best ``limit`` rows of two row sets, in claim order."""
        order = "DESC" if self.descending else "ASC"
        return (
            f"SELECT picked.id FROM ({first} UNION ALL {second}) AS picked "
            f"ORDER BY picked.priority {order}, picked.run_at ASC, picked.id ASC "
            f"LIMIT {self.limit:d}"
        )
