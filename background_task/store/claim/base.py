"""The interface every claim strategy implements."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q
from django.db.models.functions import Coalesce

from background_task.core import status
from background_task.store.models import Task, TaskQuerySet
from background_task.store.models.keys import released_key


@dataclass(frozen=True)
class ClaimRequest:
    """What a worker asks for: up to ``limit`` due tasks of these names and queues."""

    worker_id: str
    limit: int
    now: datetime
    names: Sequence[str]
    queues: Sequence[str | None] | None = None  # None: every queue
    #: ``django.tasks`` backend aliases whose rows this worker runs (any task name).
    backends: Sequence[str] = ()
    #: Paused queues (None: the default queue): nothing of theirs is claimed.
    paused: Sequence[str | None] = ()

    @property
    def empty(self) -> bool:
        """Nothing can be claimed: no room, no task this worker could run, or
        every queue it serves is paused."""
        if self.limit <= 0 or not (self.names or self.backends):
            return True
        return (
            bool(self.paused)
            and self.queues is not None
            and all((queue or None) in self.paused for queue in self.queues)
        )


class ClaimStrategy:
    """Claims due tasks for one worker so that no two workers get the same task.

    Subclasses implement :meth:`claim_ids`; everything else is shared.
    Capability flags tell the worker what it can rely on.
    """

    #: Wake-ups are pushed (LISTEN/NOTIFY) rather than found by polling.
    supports_notify = False
    #: Claims skip rows other transactions hold instead of waiting for them.
    supports_skip_locked = False

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def warm(self) -> None:
        """Make the next claim fast: connect now if the connection was closed.

        An idle worker calls this before it waits, so that the claim after
        a wake-up does not pay for connecting.
        """
        self.connection.ensure_connection()

    def candidates(self, request: ClaimRequest) -> TaskQuerySet:
        """Due, unclaimed tasks this worker can run, in claim order."""
        qs: TaskQuerySet = Task.objects.using(self.connection.alias).due(request.now)
        if request.backends:
            qs = qs.filter(
                Q(task_name__in=list(request.names), backend=None)
                | Q(backend__in=list(request.backends))
            )
        else:
            qs = qs.filter(task_name__in=list(request.names))
        qs = qs.in_queues(request.queues)
        if request.paused:
            qs = qs.outside_queues(request.paused)
        return qs.in_claim_order()

    def claim(self, request: ClaimRequest) -> list[Task]:
        """Claim up to ``request.limit`` tasks and return them, marked running."""
        if request.empty:
            return []
        self.before_claim()
        token = uuid.uuid4().hex
        tried = self.claim_ids(request, token)
        if not tried:
            return []
        # By primary key: claim_token has no index (it would cost every claim
        # an index update), and a scan for it grows with the table.
        return list(
            Task.objects.using(self.connection.alias)
            .filter(pk__in=tried, claim_token=token)
            .in_claim_order()
        )

    def next_run_at(self, now: datetime) -> datetime | None:
        """When the next waiting task scheduled after ``now`` is due (None:
        none is, or this database cannot tell cheaply).

        Any waiting task counts, whatever its name or queue: the answer
        only wakes an idle worker, which then claims as usual, and the
        query must stay one index seek per priority however many tasks
        wait. The default does not know.
        """
        return None

    def to_datetime(self, value: Any) -> datetime | None:
        """A ``run_at`` value as the database driver returned it, as the ORM
        would return it (aware under ``USE_TZ``, parsed on SQLite)."""
        if value is None:
            return None
        field = Task._meta.get_field("run_at")
        column = field.get_col(str(Task._meta.db_table))
        for converter in self.connection.ops.get_db_converters(column):
            value = converter(value, column, self.connection)
        return value  # type: ignore[no-any-return]

    def before_claim(self) -> None:
        """Note the database's change marker, so :meth:`wait` sees later changes."""

    def wait(self, timeout: float, stopping: threading.Event) -> None:
        """Wait up to ``timeout`` seconds for new work, or until ``stopping`` is set.

        The default sleeps. Strategies that can notice new tasks sooner
        return early; the worker then claims through SQL as usual, so an
        early or spurious return only costs one claim query.
        """
        stopping.wait(timeout)

    def close(self) -> None:
        """Release what :meth:`wait` holds (a listening connection, say)."""

    def claim_ids(self, request: ClaimRequest, token: str) -> list[int]:
        """Mark the claimed rows with ``token``; return the ids it tried to
        claim (those now holding ``token`` are among them), or [] if none
        was claimed."""
        raise NotImplementedError

    def claim_values(self, request: ClaimRequest, token: str) -> dict[str, object]:
        """The columns a claim writes."""
        return {
            "status": status.RUNNING,
            "locked_by": request.worker_id,
            "locked_at": request.now,
            "claim_token": token,
            "last_attempted_at": request.now,
            "started_at": Coalesce("started_at", request.now),
            # A unique task's key held until the start is free again.
            "unique_key": released_key(),
        }
