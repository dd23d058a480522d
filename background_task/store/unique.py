"""Unique tasks in the database: the INSERT that yields to a waiting twin
(a claim's release of the keys held until the start is in
:mod:`background_task.store.models.keys`).

Uniqueness is the unique constraint on ``unique_key``, never a read before
the write: two callers inserting the same key at the same instant meet in
the index, one row is stored, and the other caller is handed that row.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError

from background_task.store.inserting import insert_one, refusable
from background_task.store.models import Task
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task")

#: INSERTs tried before giving up: each retry means the twin that blocked
#: the last one started or finished in the instant between the two statements.
ATTEMPTS = 5


def insert_unique(task: Task, using: str | None = None) -> Task:
    """Insert ``task`` (which holds a ``unique_key``) unless a row with its key
    exists; return the stored row: ``task`` itself, or the existing one with
    ``deduplicated`` set.

    Inside a transaction the INSERT runs in a savepoint, so a clash leaves
    the caller's transaction usable.
    """
    alias = queue_alias(using)
    error: IntegrityError | None = None
    for _ in range(ATTEMPTS):
        try:
            with refusable(alias):
                return insert_one(task, alias)
        except IntegrityError as clash:
            error = clash
        existing = Task.objects.using(alias).filter(unique_key=task.unique_key).first()
        if existing is not None:
            existing.deduplicated = True
            found: Task = existing
            return found
        # No row holds the key any more (its task started or finished in the
        # meantime), or the error was another constraint's: try once more.
        task.pk = None
    logger.warning("Could not queue unique task %s: %s", task.task_name, error)
    assert error is not None
    raise error
