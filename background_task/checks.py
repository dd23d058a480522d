"""System checks for the package's settings (ids ``background_task.E0xx``/``W0xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning

from background_task.core.conf import LEGACY_PAIRS, SPECS, app_settings


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every setting whose value has the wrong type or range."""
    messages: list[CheckMessage] = []
    for spec in SPECS.values():
        problem = spec.problem()
        if problem:
            messages.append(
                Error(problem, hint=f"Set {spec.raw()[0]} to {spec.expected}.", id=spec.check_id)
            )
    messages.extend(check_routing())
    if not messages:
        messages.extend(check_liveness() or check_fencing())
        messages.extend(check_schedules())
    for prefixed, bare, check_id in LEGACY_PAIRS:
        if hasattr(django_settings, prefixed) and hasattr(django_settings, bare):
            new, old = getattr(django_settings, prefixed), getattr(django_settings, bare)
            if new != old:
                messages.append(
                    Warning(
                        f"{prefixed} ({new!r}) and {bare} ({old!r}) are both set and differ; "
                        f"{prefixed} is used.",
                        hint=f"Remove {bare}.",
                        id=check_id,
                    )
                )
    return messages


def check_liveness() -> list[CheckMessage]:
    """A worker must be able to miss a heartbeat without being presumed dead."""
    interval, lost_after = app_settings.HEARTBEAT_INTERVAL, app_settings.WORKER_LOST_AFTER
    if lost_after >= 3 * interval:
        return []
    return [
        Error(
            f"BACKGROUND_TASK_WORKER_LOST_AFTER ({lost_after:g}s) must be at least three "
            f"heartbeat intervals (BACKGROUND_TASK_HEARTBEAT_INTERVAL = {interval:g}s); "
            f"otherwise one slow heartbeat gets a live worker's tasks taken away.",
            hint="Raise BACKGROUND_TASK_WORKER_LOST_AFTER or lower the heartbeat interval.",
            id="background_task.E011",
        )
    ]


def check_fencing() -> list[CheckMessage]:
    """The self-fencing deadline must come before others may presume a worker
    lost, by a margin the watchdog can keep, and after more than one late heartbeat."""
    from background_task.runtime.fencing import MIN_MARGIN

    if not app_settings.SELF_FENCING:
        return []
    interval, lost_after = app_settings.HEARTBEAT_INTERVAL, app_settings.WORKER_LOST_AFTER
    fence_after = app_settings.FENCE_AFTER
    if lost_after - fence_after < MIN_MARGIN:
        return [
            Error(
                f"BACKGROUND_TASK_FENCE_AFTER ({fence_after:g}s) must be at least "
                f"{MIN_MARGIN:g}s below BACKGROUND_TASK_WORKER_LOST_AFTER ({lost_after:g}s): "
                f"a worker cut off from the database must have stopped its tasks before "
                f"other workers may take them over, or a task can run twice at once.",
                hint="Lower BACKGROUND_TASK_FENCE_AFTER (or leave it unset: it is then "
                "derived), or raise BACKGROUND_TASK_WORKER_LOST_AFTER.",
                id="background_task.E032",
            )
        ]
    if fence_after < 2 * interval:
        return [
            Error(
                f"BACKGROUND_TASK_FENCE_AFTER ({fence_after:g}s) must be at least two "
                f"heartbeat intervals (BACKGROUND_TASK_HEARTBEAT_INTERVAL = {interval:g}s); "
                f"otherwise one late heartbeat stops a healthy worker's tasks.",
                hint="Raise BACKGROUND_TASK_FENCE_AFTER or lower the heartbeat interval.",
                id="background_task.E032",
            )
        ]
    return []


def check_schedules() -> list[CheckMessage]:
    """Every declared schedule must parse and name a registered task.

    Imports the installed apps' ``tasks`` modules (as ``process_tasks``
    does) only when BACKGROUND_TASK_SCHEDULE is set, so that a settings
    schedule naming an unknown task is reported here, not at worker start.
    """
    from background_task.api.periodic import ScheduleError
    from background_task.core.exceptions import TaskDiscoveryError

    if not app_settings.SCHEDULE:
        return []
    from background_task.api.registry import autodiscover, tasks
    from background_task.runtime.scheduler import definitions

    try:
        autodiscover()
        definitions(tasks)
    except (ScheduleError, TaskDiscoveryError) as exc:
        return [
            Error(
                str(exc),
                hint="Fix the schedule in BACKGROUND_TASK_SCHEDULE.",
                id="background_task.E012",
            )
        ]
    return []


def check_routing() -> list[CheckMessage]:
    """The queue's models must live on one database the routers let them migrate to;
    routing their reads elsewhere (a replica) is reported, since they are not followed."""
    from django.db import router

    from background_task.store.routing import routes

    found = routes()
    writes = {write for write, _read in found.values()}
    if len(writes) > 1:
        where = ", ".join(f"{name} -> {write!r}" for name, (write, _read) in sorted(found.items()))
        return [
            Error(
                f"Database routers send writes of background_task's models to different "
                f"databases ({where}); the queue's tables must all be on one.",
                hint="Route every model of the background_task app to the same alias.",
                id="background_task.E026",
            )
        ]
    (alias,) = writes
    if alias not in django_settings.DATABASES:
        return [
            Error(
                f"Database routers send background_task's models to {alias!r}, which is "
                f"not in DATABASES.",
                id="background_task.E027",
            )
        ]
    messages: list[CheckMessage] = []
    from background_task.core.conf import SPECS
    from background_task.store.models import Task

    listen = SPECS["LISTEN_DATABASE"].raw()[1]
    if isinstance(listen, str) and listen not in django_settings.DATABASES:
        messages.append(
            Error(
                f"BACKGROUND_TASK_LISTEN_DATABASE names {listen!r}, which is not in DATABASES.",
                hint="Name a direct (not pooled) connection to the queue's PostgreSQL server.",
                id="background_task.E033",
            )
        )

    if not router.allow_migrate_model(alias, Task):
        messages.append(
            Error(
                f"Database routers send background_task's models to {alias!r} but do not "
                f"allow migrating them there, so its tables would never be created.",
                hint="Make allow_migrate() return True for app_label 'background_task' "
                f"on {alias!r}.",
                id="background_task.E027",
            )
        )
    reads = {read for _write, read in found.values() if read != alias}
    if reads:
        messages.append(
            Warning(
                f"Database routers send reads of background_task's models to "
                f"{', '.join(map(repr, sorted(reads)))} and writes to {alias!r}; the queue "
                f"reads from {alias!r} anyway (a replica's lag would show tasks in states "
                f"they have left).",
                hint="Route reads of app_label 'background_task' to where it writes "
                "to silence this.",
                id="background_task.W003",
            )
        )
    return messages
