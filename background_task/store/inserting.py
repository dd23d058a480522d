"""INSERTs of task rows without the ORM's per-instance work.

``Model.save()`` and ``bulk_create()`` prepare every field of every instance
on every call. A queued task differs from its neighbours in a bulk call only
in its arguments, their hash and its task id, so :func:`insert_many` prepares
the other columns once, from a template row, and sends the rows with
``COPY`` on PostgreSQL (ids drawn from the sequence first) or as multi-row
INSERTs elsewhere (returning the new ids where the database can).
:func:`insert_one` writes one built row, naming only its non-NULL columns.
:func:`insert_history` writes the worker's history rows from column values.
One statement class per database: :class:`_Statement`, and
:class:`_PostgresStatement` for COPY.

:func:`insert_one` falls back to ``save()`` when anything listens to
``pre_save``/``post_save`` of :class:`~background_task.store.models.Task`, so
such receivers keep working (``bulk_create()``, like :func:`insert_many`,
never sent them). Rows are built with ``Task(...)`` when anything listens to
``pre_init``/``post_init``.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models.signals import post_save, pre_save

from background_task.core.signals import listened
from background_task.store.models import Task
from background_task.store.routing import queue_alias
from background_task.store.rows import bare_instance, init_receivers

# Columns that differ from row to row in a bulk call.
VARYING = ("task_params", "task_hash", "task_id")
Varying = tuple[str, str, str]  # one row's (task_params, task_hash, task_id)
# JSON list columns a copied row must not share with its template.
MUTABLE = ("errors", "worker_ids")


def orm_needed() -> bool:
    """Whether a receiver of Task's model signals must see the save."""
    return listened(pre_save, Task) or listened(post_save, Task)


class _Statement:
    """The INSERT of every concrete column but the id of ``model``, for one database alias
    (shared by all threads; each uses its own connection)."""

    def __init__(self, using: str, model: type[models.Model] = Task) -> None:
        self.using = using
        self.model = model
        connection = connections[using]
        ops, features = connection.ops, connection.features
        meta = model._meta
        self.fields = [field for field in meta.concrete_fields if not field.primary_key]
        self.automatic = [
            bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))
            for field in self.fields
        ]
        self.varying = [
            next(i for i, f in enumerate(self.fields) if f.attname == name) for name in VARYING
        ]
        self.columns = [ops.quote_name(str(field.column)) for field in self.fields]
        self.table = ops.quote_name(meta.db_table)
        self.prefix = f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES "
        # Values the field would pass through unchanged: str for CharField and
        # TextField, bool for BooleanField, and on PostgreSQL (whose driver
        # takes aware datetimes as they are) datetime for DateTimeField.
        passing = {"CharField": str, "TextField": str, "BooleanField": bool}
        if connection.vendor == "postgresql" and getattr(settings, "USE_TZ", False):
            passing["DateTimeField"] = datetime
        self.kinds = [field.get_internal_type() for field in self.fields]
        self.plain = [passing.get(kind) for kind in self.kinds]
        # Columns whose value is usually their default get it as an SQL literal
        # when it is: fewer parameters to adapt and send per call.
        self.literals = [_default_literal(field) for field in self.fields]
        self.literal_sql = [literal[1] if literal else "%s" for literal in self.literals]
        #: (prepared default, SQL literal) per column, for rows of prepared values.
        self.prepared_literals = [
            (field.get_db_prep_save(literal[0], connection=connection), literal[1])
            if literal
            else None
            for field, literal in zip(self.fields, self.literals, strict=True)
        ]
        self.single_sql: dict[tuple[int, ...], str] = {}
        #: Per column, what :meth:`one` needs, in one tuple.
        self.plan = [
            (
                index,
                field.attname,
                field,
                literal[0] if literal else None,
                plain,
                kind == "DateTimeField",
            )
            for index, (field, literal, plain, kind) in enumerate(
                zip(self.fields, self.literals, self.plain, self.kinds, strict=True)
            )
        ]
        self.any_automatic = any(self.automatic)
        self.row = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        self.pk_column = str(meta.pk.column)
        pk_column = ops.quote_name(self.pk_column)
        self.returning_many = bool(features.can_return_rows_from_bulk_insert)
        # SQLite and MySQL/MariaDB report a new row's id in the reply to its
        # INSERT (``cursor.lastrowid``, exact for this connection); RETURNING
        # would make them build and read a result set for it (7 % of an
        # enqueue on SQLite).
        self.returning_one = bool(features.can_return_columns_from_insert) and (
            connection.vendor not in ("sqlite", "mysql")
        )
        self.returning = f" RETURNING {pk_column}"
        self.max_rows = max(1, ops.bulk_batch_size(self.fields, [None] * 10_000))
        #: Many rows go through COPY (not multi-row INSERTs) in :meth:`write_many`.
        self.copies = False

    @property
    def connection(self) -> Any:
        """This thread's connection: a statement is shared by every thread,
        a Django connection belongs to one."""
        return connections[self.using]

    def prepare_values(self, values: dict[str, Any]) -> list[Any]:
        """Every column's database value from ``{attname: value}`` (a missing
        one gets the field's default); for models without auto_now fields."""
        connection = self.connection
        prepared = []
        for field, plain in zip(self.fields, self.plain, strict=True):
            value = values[field.attname] if field.attname in values else field.get_default()
            if value is not None and not _passes(value, plain):
                value = field.get_db_prep_save(value, connection=connection)
            prepared.append(value)
        return prepared

    def write_rows(self, cursor: Any, rows: list[list[Any]]) -> None:
        """Insert prepared rows with one multi-row INSERT (ids not wanted)."""
        cursor.execute(
            self.prefix + ", ".join([self.row] * len(rows)), [v for row in rows for v in row]
        )

    def prepare(self, task: Task) -> list[Any]:
        """Every column's database value for ``task`` (as the ORM would send it).

        NULLs need no preparing, and only auto_now(_add) fields change in
        ``pre_save``; skipping both halves the cost of a row.
        """
        connection, values = self.connection, task.__dict__
        prepared = []
        for field, automatic in zip(self.fields, self.automatic, strict=True):
            value = field.pre_save(task, add=True) if automatic else values[field.attname]
            if value is not None:
                value = field.get_db_prep_save(value, connection=connection)
            prepared.append(value)
        return prepared

    def one(self, task: Task, connection: Any) -> tuple[str, list[Any]]:
        """The INSERT of one row, naming only its non-NULL columns (the others
        default to NULL): shorter to send, bind and parse than all of them."""
        values = task.__dict__
        if self.any_automatic:
            values = dict(values)
            for field, automatic in zip(self.fields, self.automatic, strict=True):
                if automatic:
                    values[field.attname] = field.pre_save(task, add=True)
        shape: list[int] = []  # column index; bitwise-inverted where the SQL holds a literal
        params: list[Any] = []
        # A new row's run_at and scheduled_at are one datetime object (and
        # enqueued_at often too): where the database needs datetimes
        # converted, each object is converted once. Keyed by id(): the
        # objects live in the row until this returns.
        converted: dict[int, Any] = {}
        for index, attname, field, literal, plain, is_datetime in self.plan:
            value = values[attname]
            if value is None:
                continue
            kind = type(value)
            if literal is not None and kind is type(literal) and value == literal:
                shape.append(~index)
                continue
            # Values the driver takes as they are skip the field's preparation
            # (not _passes(value, plain), inlined: this runs per column per enqueue).
            if kind is not plain or (plain is datetime and value.tzinfo is None):
                if not is_datetime:
                    value = field.get_db_prep_save(value, connection=connection)
                elif id(value) in converted:
                    value = converted[id(value)]
                else:
                    if kind is datetime and value.tzinfo is not None:
                        # What the field's preparation comes to for an aware
                        # datetime, without its checks for other kinds of value.
                        prepared = connection.ops.adapt_datetimefield_value(value)
                    else:
                        prepared = field.get_db_prep_save(value, connection=connection)
                    converted[id(value)] = prepared
                    value = prepared
            shape.append(index)
            params.append(value)
        key = tuple(shape)
        sql = self.single_sql.get(key)
        if sql is None:
            sql = self.single_sql[key] = self.single_insert(key)
        return sql, params

    def single_insert(self, shape: tuple[int, ...]) -> str:
        """The INSERT for one row of this shape (see :meth:`one`)."""
        columns = ", ".join(self.columns[i if i >= 0 else ~i] for i in shape)
        placeholders = ", ".join("%s" if i >= 0 else self.literal_sql[~i] for i in shape)
        sql = f"INSERT INTO {self.table} ({columns}) VALUES ({placeholders})"
        return sql + self.returning if self.returning_one else sql

    def write_many(
        self, cursor: Any, base: list[Any], source: Iterator[Varying], n: int, taken: list[Varying]
    ) -> list[Any]:
        """Insert ``base`` with the varying columns of the next ``n`` rows of
        ``source`` (appended to ``taken``), as one multi-row INSERT; return
        the new ids (none where the database cannot return them).

        The columns every row holds as NULL or as its field's default are
        SQL literals in each row's VALUES, not parameters: a task row has 36
        columns and a bulk call's rows differ in 3, so the statement carries
        a few parameters per row instead of 36, which the driver binds (and
        Django's SQLite backend scans for placeholders) per row.
        """
        row_sql, constant, positions = self.many_shape(base)
        params: list[Any] = []
        first, second, third = positions
        for _ in range(n):
            row = next(source)
            taken.append(row)
            values = constant.copy()
            values[first], values[second], values[third] = row
            params.extend(values)
        sql = self.prefix + ", ".join([row_sql] * n)
        if not self.returning_many:
            cursor.execute(sql, params)
            return []
        cursor.execute(sql + self.returning, params)
        return [found[0] for found in cursor.fetchall()]

    def many_shape(self, base: list[Any]) -> tuple[str, list[Any], tuple[int, int, int]]:
        """For rows like ``base`` (prepared values of every column): the
        VALUES tuple, the parameters it takes, and where the varying
        columns are among them."""
        varying = set(self.varying)
        parts: list[str] = []
        constant: list[Any] = []
        positions: dict[int, int] = {}
        for index, value in enumerate(base):
            literal = self.prepared_literals[index]
            if index in varying:
                positions[index] = len(constant)
            elif value is None:
                parts.append("NULL")
                continue
            elif literal is not None and type(value) is type(literal[0]) and value == literal[0]:
                parts.append(literal[1])
                continue
            parts.append("%s")
            constant.append(value)
        first, second, third = (positions[index] for index in self.varying)
        return "(" + ", ".join(parts) + ")", constant, (first, second, third)


class _PostgresStatement(_Statement):
    """On PostgreSQL, many rows go through COPY, the server's bulk-load path:
    no statement to parse per batch and no placeholder per value. The ids
    are drawn from the table's sequence first, so the rows keep them."""

    def __init__(self, using: str, model: type[models.Model] = Task) -> None:
        super().__init__(using, model)
        self.max_rows = 10_000  # rows per COPY: bounds the ids drawn at once
        self.copies = True
        columns = ", ".join([self.connection.ops.quote_name(self.pk_column), *self.columns])
        self.copy = f"COPY {self.table} ({columns}) FROM STDIN"
        self.ids = "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)"

    def write_rows(self, cursor: Any, rows: list[list[Any]]) -> None:
        columns = ", ".join(self.columns)
        # The driver's cursor, under Django's wrapper: errors still come out
        # as Django's (IntegrityError, OperationalError, ...).
        with (
            self.connection.wrap_database_errors,
            cursor.cursor.copy(f"COPY {self.table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def write_many(
        self, cursor: Any, base: list[Any], source: Iterator[Varying], n: int, taken: list[Varying]
    ) -> list[Any]:
        cursor.execute(self.ids, [self.model._meta.db_table, self.pk_column, n])
        ids = [found[0] for found in cursor.fetchall()]
        # JSON values the rows share are serialized once here, not by the
        # driver for every row (COPY's text format takes JSON as text).
        base = [_json_text(value) for value in base]
        first, second, third = self.varying
        driver_cursor = cursor.cursor  # psycopg's, under Django's wrapper
        with self.connection.wrap_database_errors, driver_cursor.copy(self.copy) as copy:
            for pk in ids:
                row = next(source)  # serialized now, while the server loads the last one
                taken.append(row)
                values = base.copy()
                values[first], values[second], values[third] = row
                copy.write_row([pk, *values])
        return ids


def _json_text(value: Any) -> Any:
    """The JSON text of psycopg's ``Json``/``Jsonb`` wrapper (what Django's
    JSONField prepares on PostgreSQL); other values unchanged."""
    from psycopg.types.json import Json, Jsonb

    if isinstance(value, Json | Jsonb):
        return (value.dumps or json.dumps)(value.obj)
    return value


def _passes(value: Any, plain: type | None) -> bool:
    """Whether ``value`` goes to the driver as it is (its field's preparation
    would return it unchanged)."""
    if type(value) is not plain:
        return False
    return not isinstance(value, datetime) or value.tzinfo is not None


def _default_literal(field: Any) -> tuple[Any, str] | None:
    """(default value, its SQL literal) for simple constant defaults, else None."""
    if not field.has_default() and (field.null or not field.empty_strings_allowed):
        return None
    default = field.get_default()  # "" for a NOT NULL text column without a default
    if type(default) is bool:
        return default, ("TRUE" if default else "FALSE")
    if type(default) is int:
        return default, str(default)
    if type(default) is str and (default == "" or (default.isascii() and default.isalnum())):
        return default, f"'{default}'"
    if default == [] and field.get_internal_type() == "JSONField":
        return [], "'[]'"
    return None


_statements: dict[tuple[str, int, type[models.Model]], _Statement] = {}


def _copies(connection: Any) -> bool:
    """Whether many rows go through COPY: PostgreSQL through psycopg 3
    (with psycopg2, which Django also supports, multi-row INSERTs)."""
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


def _statement(using: str, model: type[models.Model] = Task, connection: Any = None) -> _Statement:
    if connection is None:
        connection = connections[using]
    key = (using, id(connection.settings_dict), model)
    statement = _statements.get(key)
    if statement is None:
        kind = _PostgresStatement if _copies(connection) else _Statement
        statement = _statements[key] = kind(using, model)
    return statement


@contextmanager
def refusable(using: str) -> Iterator[None]:
    """Around an INSERT that a unique constraint may refuse: a savepoint
    inside the caller's transaction, so that the refusal leaves it usable;
    nothing in autocommit, where a refused statement is harmless."""
    if connections[using].in_atomic_block:
        with transaction.atomic(using=using):
            yield
    else:
        yield


def insert_history(rows: list[dict[str, Any]], using: str | None = None) -> None:
    """Insert CompletedTask rows given as ``{attname: value}`` (missing
    columns get their defaults), without building model instances; like
    ``bulk_create()``, it sends no model signals and sets no ids."""
    from background_task.store.models import CompletedTask

    if not rows:
        return
    statement = _statement(queue_alias(using), CompletedTask)
    prepared = [statement.prepare_values(row) for row in rows]
    with statement.connection.cursor() as cursor:
        for start in range(0, len(prepared), statement.max_rows):
            statement.write_rows(cursor, prepared[start : start + statement.max_rows])


def _saved(task: Task, using: str) -> Task:
    task._state.adding = False
    task._state.db = using
    return task


def insert_one(task: Task, using: str | None = None) -> Task:
    """Insert one built, unsaved row and set its id; returns it."""
    alias = queue_alias(using)
    if orm_needed():
        task.save(using=alias, force_insert=True)
        return task
    connection = connections[alias]
    statement = _statement(alias, Task, connection)
    if not task.locked_by:
        task.locked_by = None  # as Task.save() does
    sql, values = statement.one(task, connection)
    cursor = _insert_cursor(connection)
    cursor.execute(sql, values)
    if statement.returning_one:
        task.pk = cursor.fetchall()[0][0]
    else:
        task.pk = connection.ops.last_insert_id(cursor, Task._meta.db_table, statement.pk_column)
    return _saved(task, alias)


#: Per connection: (cursor, the driver connection it belongs to, whether it logs queries).
_cursors: weakref.WeakKeyDictionary[Any, tuple[Any, Any, bool]] = weakref.WeakKeyDictionary()


def _insert_cursor(connection: Any) -> Any:
    """A Django cursor kept for this connection's one-row INSERTs.

    A new cursor per call cost about 40 µs of CPU on PostgreSQL, a sixth of
    an enqueue. The cursor is Django's own wrapper, so execute wrappers,
    query logging and error translation apply; it is replaced when the
    connection was reopened or query logging was switched (``DEBUG``,
    ``assertNumQueries``). Connections are per thread, and so is this.
    """
    connection.ensure_connection()
    driver, logged = connection.connection, connection.queries_logged
    kept = _cursors.get(connection)
    if kept is not None and kept[1] is driver and kept[2] == logged:
        return kept[0]
    cursor = connection.cursor()
    _cursors[connection] = (cursor, driver, logged)
    return cursor


def insert_many(
    template: Task,
    varying: Iterable[tuple[str, str, str]],
    *,
    count: int | None = None,
    batch_size: int = 1000,
    using: str | None = None,
) -> list[Task]:
    """Insert rows equal to ``template`` but for (task_params, task_hash,
    task_id) from ``varying``; returns the saved rows, in order.

    With ``count`` (how many rows ``varying`` yields), the rows are taken
    from it while they are written, so on PostgreSQL the server loads one
    row while the next is being serialized. The rows go in one transaction
    (a savepoint inside an outer one): if ``varying`` raises, nothing is
    stored and the exception propagates.

    The ids are set where the database returns them from a multi-row INSERT
    (PostgreSQL, SQLite, MariaDB); on MySQL they stay None, as with
    ``bulk_create()``, and ``task_id`` identifies each row.
    """
    alias = queue_alias(using)
    source: Iterator[Varying] = iter(varying)
    if count is None:
        buffered = list(source)
        count, source = len(buffered), iter(buffered)
    statement = _statement(alias)
    if not template.locked_by:
        template.locked_by = None
    base = statement.prepare(template)
    # A COPY has no statement to keep short: batch_size is for the INSERTs.
    per_batch = (
        statement.max_rows if statement.copies else max(1, min(batch_size, statement.max_rows))
    )
    ids: list[Any] = []
    rows: list[Varying] = []
    with transaction.atomic(using=alias), statement.connection.cursor() as cursor:
        for start in range(0, count, per_batch):
            ids.extend(
                statement.write_many(cursor, base, source, min(per_batch, count - start), rows)
            )
    fast = not init_receivers(Task)
    tasks = [_copy(template, alias, *row, fast=fast) for row in rows]
    if ids:
        for task, pk in zip(tasks, ids, strict=True):
            task.pk = pk
    return tasks


def unsaved_copies(template: Task, varying: Iterable[Varying]) -> list[Task]:
    """Unsaved copies of ``template`` for (task_params, task_hash, task_id)
    rows that :func:`insert_many` will store later."""
    tasks = [_copy(template, "", *row, fast=False) for row in varying]
    for task in tasks:
        task._state.adding, task._state.db = True, None
    return tasks


def _copy(template: Task, using: str, params: str, hash_: str, task_id: str, *, fast: bool) -> Task:
    """A saved-looking copy of ``template`` with its own arguments and ids."""
    if fast:
        task = bare_instance(Task, template.__dict__)
        for name in MUTABLE:  # each row gets its own lists
            task.__dict__[name] = list(template.__dict__[name])
    else:
        task = Task(
            **{
                field.attname: getattr(template, field.attname)
                for field in Task._meta.concrete_fields
            }
        )
    task.task_params, task.task_hash, task.task_id = params, hash_, task_id
    return _saved(task, using)
