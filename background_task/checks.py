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
    if not messages:
        messages.extend(check_liveness())
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
