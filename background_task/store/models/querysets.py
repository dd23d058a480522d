"""The named states of task rows, as queryset methods (``Task.objects.due(now)``...)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from background_task.core import status
from background_task.core.conf import app_settings
from background_task.store.models.routed import QueueQuerySet
from background_task.store.models.worker import WorkerProcess

if TYPE_CHECKING:
    from background_task.store.models.task import CompletedTask, Task  # noqa: F401


class TaskQuerySet(QueueQuerySet["Task"]):
    """Named states of waiting and running tasks."""

    def created_by(self, creator: models.Model) -> TaskQuerySet:
        content_type = ContentType.objects.db_manager(self.db).get_for_model(creator)
        return self.filter(creator_content_type=content_type, creator_object_id=creator.pk)

    def waiting(self) -> TaskQuerySet:
        return self.filter(status=status.WAITING)

    def running(self) -> TaskQuerySet:
        return self.filter(status=status.RUNNING)

    def due(self, now: datetime) -> TaskQuerySet:
        return self.filter(status=status.WAITING, run_at__lte=now)

    def in_queues(self, queues: Sequence[str | None] | None) -> TaskQuerySet:
        """Restrict to the given queues; None means every queue."""
        if queues is None:
            return self
        names = [q for q in queues if q is not None]
        condition = Q(queue__in=names)
        if None in queues:
            condition |= Q(queue__isnull=True)
        return self.filter(condition)

    def outside_queues(self, queues: Sequence[str | None]) -> TaskQuerySet:
        """Leave out the given queues (None or "": the default queue)."""
        names = [q for q in queues if q]
        conditions = [Q(queue__in=names)] if names else []
        if any(not q for q in queues):
            conditions += [Q(queue__isnull=True), Q(queue="")]
        if not conditions:
            return self
        condition = conditions[0]
        for other in conditions[1:]:
            condition |= other
        return self.exclude(condition)

    def waiting_copies(self, digest: str) -> TaskQuerySet:
        """Unclaimed waiting tasks of the same name and arguments."""
        return self.filter(status=status.WAITING, task_hash=digest, locked_by=None)

    def claim_expired(self, now: datetime) -> TaskQuerySet:
        """Running tasks whose claim is older than MAX_RUN_TIME."""
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        return self.filter(status=status.RUNNING, locked_at__lt=expiry)

    def orphaned(self, now: datetime, lost_after: float | None) -> TaskQuerySet:
        """Running tasks whose worker is gone.

        Held by a registered worker whose last heartbeat (database time) is
        older than ``lost_after`` seconds; or held by a process that never
        registered (a 1.2.8 worker, ``run_next_task()`` in a web process)
        and claimed longer ago than MAX_RUN_TIME, 1.2.8's rule. A task held
        by a worker that heartbeats is never taken away from it. With
        ``lost_after=None`` only the second rule applies.
        """
        workers = WorkerProcess.objects.using(self.db)
        known = workers.filter(worker_id=OuterRef("locked_by"))
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        condition: Any = ~Exists(known) & Q(locked_at__lt=expiry)
        if lost_after is not None:
            cutoff = Now() - timedelta(seconds=lost_after)
            condition |= Exists(known.filter(heartbeat_at__lt=cutoff))
        return self.filter(status=status.RUNNING).filter(condition)

    def in_claim_order(self) -> TaskQuerySet:
        """Order by priority (as BACKGROUND_TASK_PRIORITY_ORDERING says), run_at, id."""
        prefix = app_settings.BACKGROUND_TASK_PRIORITY_ORDERING
        return self.order_by(f"{prefix}priority", "run_at", "id")


class CompletedTaskQuerySet(QueueQuerySet["CompletedTask"]):
    """Named states of finished tasks."""

    def created_by(self, creator: models.Model) -> CompletedTaskQuerySet:
        content_type = ContentType.objects.db_manager(self.db).get_for_model(creator)
        return self.filter(creator_content_type=content_type, creator_object_id=creator.pk)

    def failed(self, within: timedelta | None = None) -> CompletedTaskQuerySet:
        qs = self.filter(failed_at__isnull=False)
        if within:
            qs = qs.filter(failed_at__gt=timezone.now() - within)
        return qs

    def succeeded(self, within: timedelta | None = None) -> CompletedTaskQuerySet:
        qs = self.filter(failed_at__isnull=True)
        if within:
            qs = qs.filter(run_at__gt=timezone.now() - within)
        return qs
