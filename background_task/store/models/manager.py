"""``Task.objects``: django-background-tasks 1.2.8's manager methods."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from background_task.core import status
from background_task.core.conf import app_settings
from background_task.core.serialization import dumps_params, task_hash
from background_task.store.hooks import enqueue_by_name
from background_task.store.models.querysets import TaskQuerySet
from background_task.store.models.routed import QueueManager
from background_task.store.rows import build_row

if TYPE_CHECKING:
    from background_task.store.models.task import Task


class TaskManager(QueueManager.from_queryset(TaskQuerySet)):  # type: ignore[misc]
    """``Task.objects``: 1.2.8's manager methods on top of the named states."""

    def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Task | None:
        """Queue a call of a task by name (see ``background_task.enqueue``)."""
        task: Task | None = enqueue_by_name.get()(task_name, *args, **kwargs)
        return task

    def unlocked(self, now: datetime) -> TaskQuerySet:
        """Rows nobody holds: never locked, or locked longer ago than MAX_RUN_TIME."""
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        return self.filter(Q(locked_by=None) | Q(locked_at__lt=expiry))  # type: ignore[no-any-return]

    def locked(self, now: datetime) -> TaskQuerySet:
        """Rows held by a live claim (1.2.8 also counted expired claims here)."""
        expiry = now - timedelta(seconds=app_settings.MAX_RUN_TIME)
        return self.filter(locked_by__isnull=False, locked_at__gt=expiry)  # type: ignore[no-any-return]

    def failed(self) -> TaskQuerySet:
        return self.filter(failed_at__isnull=False)  # type: ignore[no-any-return]

    def find_available(self, queue: str | None = None) -> TaskQuerySet:
        """Due, unheld tasks in claim order, optionally of one queue (1.2.8 API)."""
        now = timezone.now()
        qs = self.unlocked(now).filter(failed_at=None, run_at__lte=now)
        qs = qs.filter(status__in=status.PENDING)
        if queue:
            qs = qs.filter(queue=queue)
        return qs.in_claim_order()

    def new_task(
        self,
        task_name: str,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        verbose_name: str | None = None,
        creator: models.Model | None = None,
        repeat: int | None = None,
        repeat_until: datetime | None = None,
        remove_existing_tasks: bool = False,
    ) -> Task:
        """Build an unsaved Task; with ``remove_existing_tasks`` first delete the
        waiting tasks of the same name, arguments and queue."""
        args = [] if args is None else args
        task = build_row(
            self.model,
            task_name,
            args if isinstance(args, list | tuple) else [args],
            kwargs,
            now=timezone.now(),
            run_at=run_at,
            priority=priority,
            queue=queue,
            verbose_name=verbose_name,
            creator=creator,
            repeat=repeat,
            repeat_until=repeat_until,
        )
        if remove_existing_tasks:
            self.waiting_copies(task.task_hash).in_queues([queue]).delete()
        return task  # type: ignore[no-any-return]

    def get_task(self, task_name: str, args: Any = None, kwargs: Any = None) -> TaskQuerySet:
        args = [] if args is None else args
        params = dumps_params(args if isinstance(args, list | tuple) else [args], kwargs or {})
        return self.filter(task_hash=task_hash(task_name, params))  # type: ignore[no-any-return]

    def drop_task(self, task_name: str, args: Any = None, kwargs: Any = None) -> None:
        self.get_task(task_name, args, kwargs).delete()
