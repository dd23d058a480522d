"""Keeping the queue's tables lean on PostgreSQL: VACUUM them once dead rows pile up.

Every task leaves dead row versions behind in the task table: its claim
(an UPDATE of an indexed column) and its end (a DELETE). They sit in the
claim index ahead of the waiting tasks, and each claim walks over them
until a VACUUM removes them. Autovacuum visits a database at most once per
``autovacuum_naptime`` (a minute by default), and under a sustained few
thousand tasks a second that minute is enough to pile up hundreds of
thousands of dead versions: claims slow down, the backlog grows, and the
queue falls behind until autovacuum comes (measured in docs/scaling.md).

So a running worker looks at PostgreSQL's statistics every second or so
and VACUUMs a table whose dead versions number at least
``BACKGROUND_TASK_VACUUM_AFTER`` and a fifth of its live rows. A VACUUM of
the task table reads only its few live pages and its indexes, and
``SKIP_LOCKED`` makes a worker skip a table another worker (or autovacuum)
is vacuuming at that moment instead of waiting for it.

VACUUM needs the table's or the database's owner (or, from PostgreSQL 17,
the MAINTAIN privilege). A worker whose database user may not vacuum says so once and
leaves it to autovacuum, which docs/scaling.md shows how to tune.
InnoDB purges old row versions on its own threads and SQLite reuses the
pages of deleted rows, so they need nothing of this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import connections

from background_task.store.models import CompletedTask, Task
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.worker")

#: Dead versions are weighed against this share of a table's live rows, so a
#: large history is vacuumed about as often as autovacuum would.
LIVE_SHARE = 0.2


@dataclass(frozen=True)
class TableStats:
    """PostgreSQL's count of a table's live rows and dead row versions."""

    table: str
    live: int
    dead: int

    def needs_vacuum(self, threshold: int) -> bool:
        """Whether the dead versions pass both ``threshold`` and a share of the live rows."""
        return self.dead >= threshold and self.dead >= LIVE_SHARE * self.live


class Vacuum:
    """VACUUMs the task and history tables of one PostgreSQL database when due."""

    def __init__(self, using: str, threshold: int) -> None:
        self.using = using
        self.threshold = threshold
        self.tables = (str(Task._meta.db_table), str(CompletedTask._meta.db_table))
        self._allowed: bool | None = None  # learnt on the first pass

    def stats(self) -> list[TableStats]:
        """The live and dead counts of the queue's tables, from the statistics views."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables "
                "WHERE relid = ANY(ARRAY[%s::regclass, %s::regclass])",
                list(self.tables),
            )
            return [TableStats(name, live, dead) for name, live, dead in cursor.fetchall()]

    def allowed(self) -> bool:
        """Whether this connection's user may VACUUM the task table (asked once)."""
        if self._allowed is None:
            connection = connections[self.using]
            maintain = (
                " OR has_table_privilege(c.oid, 'MAINTAIN')"
                if connection.pg_version >= 170000  # type: ignore[attr-defined]
                else ""
            )
            with connection.cursor() as cursor:
                # The table's owner, the database's owner, a superuser, or
                # (PostgreSQL 17) a holder of MAINTAIN on the table.
                cursor.execute(
                    "SELECT pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE') "
                    f"OR r.rolsuper{maintain} FROM pg_class c, pg_roles r, pg_database d "
                    "WHERE c.oid = %s::regclass AND r.rolname = current_user "
                    "AND d.datname = current_database()",
                    [self.tables[0]],
                )
                row = cursor.fetchone()
            self._allowed = bool(row and row[0])
            if not self._allowed:
                logger.info(
                    "This database user may not VACUUM %s; its dead rows are left to "
                    "autovacuum (see the sustained-load section of docs/scaling.md).",
                    self.tables[0],
                )
        return self._allowed

    def run(self) -> list[str]:
        """VACUUM the tables that are due; return their names."""
        if self._allowed is False:
            return []
        due = [stat.table for stat in self.stats() if stat.needs_vacuum(self.threshold)]
        if not due or not self.allowed():
            return []
        connection = connections[self.using]
        done = []
        with connection.cursor() as cursor:
            for table in due:
                # Not in a transaction block: the worker's threads run in autocommit.
                cursor.execute(f"VACUUM (SKIP_LOCKED) {connection.ops.quote_name(table)}")
                done.append(table)
        return done


def table_vacuum(using: str | None, threshold: int | None) -> Vacuum | None:
    """The vacuum of the queue's database, or None where it needs none
    (SQLite, MariaDB/MySQL) or ``threshold`` turns it off."""
    using = queue_alias(using)
    if not threshold or connections[using].vendor != "postgresql":
        return None
    return Vacuum(using, threshold)
