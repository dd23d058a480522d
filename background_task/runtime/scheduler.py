"""Schedules in the database: sync the definitions, fire what is due, exactly once.

``sync`` runs when ``process_tasks`` starts. ``fire_due`` runs in every
worker's loop: for each due schedule it queues the task(s), records each fire
time in ScheduleFire and moves ``next_run_at`` on, all in one transaction.
ScheduleFire's unique (schedule, fire_at) constraint makes a second firing of
the same time fail and roll back, however many workers race for it; where
the database can, the schedule row is also locked with SKIP LOCKED so that
racing workers do not even try.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Min

from background_task.api.periodic import ScheduleDefinition, from_setting, make_recurrence
from background_task.api.registry import Tasks
from background_task.core import instruments
from background_task.core.conf import app_settings
from background_task.core.recurrence import Recurrence
from background_task.core.serialization import loads_params
from background_task.store.models import Schedule, ScheduleFire, Task, build_task
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.scheduler")

FIRE_BATCH = 20  # schedules fired per call, at most
SKIP_GRACE = timedelta(seconds=60)  # with catch_up="skip", a fire this late still runs (at most)
FIRE_HISTORY = timedelta(days=30)  # ScheduleFire rows older than this are pruned


def definitions(registry: Tasks) -> list[ScheduleDefinition]:
    """The schedules declared by decorators and by BACKGROUND_TASK_SCHEDULE.

    Raises ScheduleError for a bad setting, a name defined twice, or a
    settings schedule naming a task that is not registered.
    """
    from background_task.api.periodic import ScheduleError

    found = {definition.name: definition for definition in registry.schedules()}
    for definition in from_setting(app_settings.SCHEDULE):
        if definition.name in found:
            raise ScheduleError(
                f"Schedule {definition.name!r} is defined both in BACKGROUND_TASK_SCHEDULE "
                f"and by a decorator; rename one of them."
            )
        if definition.task_name not in registry:
            raise ScheduleError(
                f"Schedule {definition.name!r} in BACKGROUND_TASK_SCHEDULE names task "
                f"{definition.task_name!r}, which is not registered (known: "
                f"{', '.join(registry.names()) or 'none'})."
            )
        found[definition.name] = definition
    return list(found.values())


def sync(
    declared: Iterable[ScheduleDefinition], now: datetime, using: str | None = None
) -> dict[str, int]:
    """Make the Schedule table match the declared schedules.

    New ones are added (firing at once with ``start_now``), changed ones
    updated with their grid restarted from now, and ones no longer declared
    marked ``defined=False`` (kept, with their history). Safe to run from
    many workers at once. Returns counts of added, updated and removed.
    """
    using = queue_alias(using)
    default_zone = app_settings.SCHEDULE_TIMEZONE
    rows = {row.name: row for row in Schedule.objects.using(using)}
    counts = {"added": 0, "updated": 0, "removed": 0}
    names = set()
    for definition in declared:
        names.add(definition.name)
        fingerprint = definition.fingerprint(default_zone)
        row = rows.get(definition.name)
        if row is not None and row.fingerprint == fingerprint:
            if not row.defined:
                Schedule.objects.using(using).filter(pk=row.pk).update(defined=True)
                counts["updated"] += 1
            continue
        recurrence = definition.recurrence(default_zone)
        fields = {
            "task_name": definition.task_name,
            "kind": definition.kind,
            "expression": definition.expression,
            "timezone": definition.timezone or default_zone,
            "task_params": definition.params(),
            "queue": definition.queue,
            "priority": definition.priority,
            "catch_up": definition.catch_up,
            "catch_up_limit": definition.catch_up_limit,
            "overlap": definition.overlap,
            "source": definition.source,
            "defined": True,
            "fingerprint": fingerprint,
            "anchor": now,
            "next_run_at": recurrence.next_after(now, now),
        }
        if row is None:
            if definition.start_now:
                fields["next_run_at"] = now
            try:
                with transaction.atomic(using=using):
                    Schedule.objects.using(using).create(name=definition.name, **fields)
            except IntegrityError:
                continue  # another worker added it first
            counts["added"] += 1
            logger.info("Schedule %s added (%s).", definition.name, definition.expression)
        else:
            # Conditional on the old fingerprint: of several workers, one updates.
            if (
                Schedule.objects.using(using)
                .filter(pk=row.pk, fingerprint=row.fingerprint)
                .update(**fields)
            ):
                counts["updated"] += 1
                logger.info("Schedule %s changed (%s).", definition.name, definition.expression)
    gone = Schedule.objects.using(using).filter(defined=True).exclude(name__in=names)
    counts["removed"] = gone.update(defined=False)
    return counts


def sync_declared(registry: Tasks, using: str | None = None) -> dict[str, int]:
    """Sync what ``registry`` and the settings declare, at the database's time."""
    using = queue_alias(using)
    from django.utils import timezone

    return sync(definitions(registry), timezone.now(), using)


def next_due(registry: Tasks, using: str | None = None) -> datetime | None:
    """When the earliest active schedule whose task ``registry`` knows is due."""
    using = queue_alias(using)
    active = Schedule.objects.using(using).filter(
        enabled=True, defined=True, task_name__in=registry.names()
    )
    found: datetime | None = active.aggregate(first=Min("next_run_at"))["first"]
    return found


def fire_due(registry: Tasks, now: datetime, using: str | None = None) -> int:
    """Fire the schedules due at ``now`` whose task ``registry`` knows; return
    how many tasks were queued."""
    using = queue_alias(using)
    due = list(
        Schedule.objects.using(using)
        .filter(enabled=True, defined=True, next_run_at__lte=now, task_name__in=registry.names())
        .order_by("next_run_at")
        .values_list("pk", flat=True)[:FIRE_BATCH]
    )
    queued = 0
    for pk in due:
        try:
            with transaction.atomic(using=using):
                queued += _fire(pk, registry, now, using)
        except IntegrityError:
            logger.debug("Schedule %s was fired by another worker.", pk)
    return queued


def _fire(pk: int, registry: Tasks, now: datetime, using: str) -> int:
    rows = Schedule.objects.using(using).filter(pk=pk, next_run_at__lte=now)
    features = connections[using].features
    if features.has_select_for_update:
        rows = rows.select_for_update(skip_locked=features.has_select_for_update_skip_locked)
    schedule = rows.first()
    if schedule is None or schedule.next_run_at is None:
        return 0  # fired (or being fired) by another worker
    recurrence = make_recurrence(schedule.kind, schedule.expression, schedule.timezone)
    times = recurrence.due_between(
        schedule.next_run_at, now, schedule.anchor, limit=schedule.catch_up_limit
    )
    if schedule.catch_up == "once":
        times = times[-1:]
    elif schedule.catch_up == "skip":
        times = [time for time in times[-1:] if now - time < _grace(recurrence, time, schedule)]
    previous_pending = bool(
        schedule.last_task_id
        and not schedule.overlap
        and Task.objects.using(using).filter(task_id=schedule.last_task_id).exists()
    )
    proxy = registry.get(schedule.task_name)
    args, kwargs = loads_params(schedule.task_params)
    queued = 0
    for fire_at in times:
        if previous_pending and not queued:
            ScheduleFire.objects.using(using).create(
                schedule=schedule,
                fire_at=fire_at,
                skipped="its previous run is still queued or running (overlap=False)",
            )
            logger.info(
                "Schedule %s: not queued at %s, its previous run is still queued or running.",
                schedule.name,
                fire_at,
            )
            continue
        task = build_task(
            schedule.task_name,
            args,
            kwargs,
            now=now,
            run_at=fire_at,
            priority=schedule.priority,
            queue=schedule.queue or proxy.queue,
            verbose_name=proxy.verbose_name,
            max_attempts=proxy.max_attempts,
            timeout=proxy.timeout,
            on_worker_lost=proxy.on_worker_lost,
            result_ttl=proxy.ttl,
            traced=False,  # each firing starts a trace of its own
        )
        ScheduleFire.objects.using(using).create(
            schedule=schedule, fire_at=fire_at, task_id=task.task_id
        )
        task.save(using=using, force_insert=True)
        if instruments.ACTIVE:
            instruments.queued([task])
        schedule.last_task_id = task.task_id
        queued += 1
    if not times:
        logger.info("Schedule %s: missed fire(s) skipped (catch_up='skip').", schedule.name)
    schedule.last_run_at = times[-1] if times else schedule.last_run_at
    schedule.next_run_at = recurrence.next_after(now, schedule.anchor)
    schedule.save(using=using, update_fields=["last_run_at", "last_task_id", "next_run_at"])
    if queued:
        logger.info("Schedule %s queued %d task(s).", schedule.name, queued)
    return queued


def _grace(recurrence: Recurrence, fire_at: datetime, schedule: Schedule) -> timedelta:
    """How late a fire may run with catch_up="skip": SKIP_GRACE, or half the
    time to the following fire if that is shorter."""
    following = recurrence.next_after(fire_at, schedule.anchor)
    if following is None:
        return SKIP_GRACE
    return min(SKIP_GRACE, (following - fire_at) / 2)


def run_now(schedule: Schedule, registry: Tasks, now: datetime) -> Task:
    """Queue one run of ``schedule`` at once, off its grid (the admin's "run now")."""
    using = queue_alias(schedule._state.db)
    proxy = registry.get(schedule.task_name) if schedule.task_name in registry else None
    args, kwargs = loads_params(schedule.task_params)
    task = build_task(
        schedule.task_name,
        args,
        kwargs,
        now=now,
        priority=schedule.priority,
        queue=schedule.queue or (proxy.queue if proxy else None),
        verbose_name=proxy.verbose_name if proxy else None,
        max_attempts=proxy.max_attempts if proxy else None,
        timeout=proxy.timeout if proxy else None,
        on_worker_lost=proxy.on_worker_lost if proxy else None,
        result_ttl=proxy.ttl if proxy else None,
    )
    with transaction.atomic(using=using):
        task.save(using=using, force_insert=True)
        Schedule.objects.using(using).filter(pk=schedule.pk).update(last_task_id=task.task_id)
    return task


def prune_fires(now: datetime, using: str | None = None) -> int:
    """Delete ScheduleFire rows older than FIRE_HISTORY (they can never fire again:
    every schedule's next run is later)."""
    using = queue_alias(using)
    old = ScheduleFire.objects.using(using).filter(fire_at__lt=now - FIRE_HISTORY)
    count, _ = old.delete()
    return count


def describe(schedule: Schedule) -> dict[str, Any]:
    """What the admin and ``list_schedules`` show of a schedule (JSON-friendly)."""
    try:
        expression = make_recurrence(
            schedule.kind, schedule.expression, schedule.timezone
        ).describe()
    except ValueError:
        expression = schedule.expression
    if not schedule.defined:
        state = "removed from code"
    elif not schedule.enabled:
        state = "disabled"
    elif schedule.next_run_at is None:
        state = "finished"
    else:
        state = "active"
    return {
        "name": schedule.name,
        "task": schedule.task_name,
        "kind": schedule.kind,
        "expression": expression,
        "timezone": schedule.timezone,
        "queue": schedule.queue,
        "next_run_at": schedule.next_run_at.isoformat() if schedule.next_run_at else None,
        "last_run_at": schedule.last_run_at.isoformat() if schedule.last_run_at else None,
        "last_task_id": schedule.last_task_id,
        "last_outcome": schedule.last_outcome() or None,
        "enabled": schedule.enabled,
        "defined": schedule.defined,
        "state": state,
    }
