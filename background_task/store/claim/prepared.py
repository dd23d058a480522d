"""Server-side prepared claim statements on PostgreSQL.

The claim statement is long (a recursive walk of priorities, a locking
subquery per priority, an UPDATE ... RETURNING): PostgreSQL spends about a
millisecond parsing and planning it, ten times what running it costs on an
idle queue, and that millisecond is most of an idle worker's pick-up
latency. A statement PREPAREd once per session skips both.

Django turns psycopg's own prepared statements off by default, because
behind a connection pooler in transaction mode (PgBouncer) the server
session changes between statements: psycopg's names (``_pg3_0``...) would
then run another client's statement. The names here are derived from the
statement's text instead, so whichever session holds a statement of that
name holds the very same SQL. A session that does not hold it (a pooler
handed over another session, or a reset discarded it) is answered from the
plain statement, and after a few such misses in a row this process stops
preparing claims at all.

Claims inside a transaction block always use the plain statement: an error
there would abort the caller's transaction. So do connections with
psycopg's server-side binding (``OPTIONS["server_side_binding"]``), where
the driver prepares statements itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("background_task.worker")

#: SQLSTATEs of an EXECUTE that found no usable statement of its name.
UNDEFINED_STATEMENT = "26000"  # invalid_sql_statement_name
RESULT_TYPE_CHANGED = "0A000"  # "cached plan must not change result type" (schema changed)
#: SQLSTATE of a PREPARE whose name this session already holds.
DUPLICATE_STATEMENT = "42P05"
#: Misses in a row after which this process stops preparing claims.
MAX_MISSES = 3
#: Statements kept prepared per session, the most recently used.
MAX_STATEMENTS = 8

_PLACEHOLDER = re.compile(r"%[s%]")


def numbered(sql: str) -> tuple[str, int]:
    """``sql`` with its ``%s`` placeholders numbered ``$1``, ``$2``... (and
    ``%%`` unescaped), as PREPARE wants it; and how many there are."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if match.group() == "%%":
            return "%"
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(replace, sql), count


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (psycopg 3 or psycopg2), if known."""
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


@dataclass(frozen=True)
class Prepared:
    """One statement's PREPARE and EXECUTE texts."""

    name: str
    prepare: str
    execute: str

    @classmethod
    def of(cls, sql: str) -> Prepared:
        name = "bgtask_claim_" + hashlib.sha1(sql.encode()).hexdigest()[:24]
        body, count = numbered(sql)
        arguments = ", ".join(["%s"] * count)
        return cls(name, f"PREPARE {name} AS {body}", f"EXECUTE {name}({arguments})")


class PreparedStatements:
    """Runs statements PREPAREd on the current session of ``connection``.

    The most recently used ``MAX_STATEMENTS`` are kept prepared (a claim's
    text varies with its batch size); older ones are DEALLOCATEd.
    """

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        # With psycopg's server-side binding the driver prepares statements
        # itself (``prepare_threshold``), and EXECUTE cannot take bound
        # parameters.
        options = connection.settings_dict.get("OPTIONS") or {}
        self.enabled = not options.get("server_side_binding")
        self._session: Any = None  # the driver connection the names below live on
        self._held: set[str] = set()
        self._statements: OrderedDict[str, Prepared] = OrderedDict()  # by SQL, oldest first
        self._misses = 0

    def usable(self) -> bool:
        """Whether a statement run now may go through a prepared one."""
        return self.enabled and not self.connection.in_atomic_block

    def fetchall(self, cursor: Any, sql: str, params: list[Any]) -> list[Any]:
        """Run ``sql`` with ``params`` through its prepared statement; its rows."""
        statement = self._statement(cursor, sql)
        if self._ensure(cursor, statement):
            try:
                cursor.execute(statement.execute, params)
                rows = list(cursor.fetchall())
            except DatabaseError as exc:
                state = sqlstate(exc)
                if state not in (UNDEFINED_STATEMENT, RESULT_TYPE_CHANGED):
                    raise
                self._missed(cursor, statement, state)
            else:
                self._misses = 0
                return rows
        # Not prepared, or the session lacked it: the plain statement.
        cursor.execute(sql, params)
        return list(cursor.fetchall())

    def prepare_latest(self, cursor: Any) -> None:
        """Prepare the statement run last on the current session, if it lacks it."""
        if self._statements:
            self._ensure(cursor, next(reversed(self._statements.values())))

    def _statement(self, cursor: Any, sql: str) -> Prepared:
        statement = self._statements.get(sql)
        if statement is not None:
            self._statements.move_to_end(sql)
            return statement
        statement = self._statements[sql] = Prepared.of(sql)
        while len(self._statements) > MAX_STATEMENTS:
            _, oldest = self._statements.popitem(last=False)
            if oldest.name in self._held and self.connection.connection is self._session:
                self._held.discard(oldest.name)
                with contextlib.suppress(ProgrammingError):
                    cursor.execute(f"DEALLOCATE {oldest.name}")
        return statement

    def _ensure(self, cursor: Any, statement: Prepared) -> bool:
        """PREPARE ``statement`` unless this session holds it; False if that failed."""
        if self.connection.connection is not self._session:
            self._session, self._held = self.connection.connection, set()
        if statement.name in self._held:
            return True
        try:
            cursor.execute(statement.prepare)
        except (OperationalError, InterfaceError):
            raise  # the connection: the worker's outage handling takes over
        except DatabaseError as exc:
            if sqlstate(exc) != DUPLICATE_STATEMENT:
                self.enabled = False
                logger.warning(
                    "Cannot prepare the claim statement (%s); claiming with plain statements.",
                    exc,
                )
                return False
        self._held.add(statement.name)
        return True

    def _missed(self, cursor: Any, statement: Prepared, state: str) -> None:
        self._held.discard(statement.name)
        if state == RESULT_TYPE_CHANGED:
            # The table changed under the statement: drop it, prepare afresh next time.
            with contextlib.suppress(DatabaseError):
                cursor.execute(f"DEALLOCATE {statement.name}")
        self._misses += 1
        if self._misses >= MAX_MISSES:
            self.enabled = False
            logger.info(
                "PostgreSQL lost the prepared claim statement %d times in a row "
                "(a connection pooler in transaction mode?); claiming with plain "
                "statements from now on.",
                self._misses,
            )
