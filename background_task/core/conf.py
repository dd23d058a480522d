"""The package's settings, read lazily from ``django.conf.settings``.

This is the only module that reads Django settings. Each value is read
and validated on first use: a bad value raises ``ImproperlyConfigured``
naming the setting and what was expected. A valid value is then kept until
Django reports a changed setting (``setting_changed``, sent by
``override_settings`` and pytest-django's ``settings``), because a worker
reads several settings per task and reading one through Django's lazy
settings object took longer than using it. The system checks in
:mod:`background_task.checks` run the same validators at startup.
"""

from __future__ import annotations

import functools
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from background_task.core.autostart_options import AutostartOptions, parse_options
from background_task.core.retry import DEFAULT_POLICY, Policy, RetryPolicy, make_policy

_MISSING = object()
#: Valid setting values read so far, by the names of their SettingSpec.
_values: dict[tuple[str, ...], Any] = {}
#: Whether each name asked about by is_set() is set.
_present: dict[str, bool] = {}


def _forget_values(**kwargs: Any) -> None:
    # Any setting: a default may depend on another (TIME_ZONE, for one).
    _values.clear()
    _present.clear()


setting_changed.connect(_forget_values, dispatch_uid="background_task.conf")

#: What happens to a task whose worker died while holding it.
RETRY = "retry"  # count the attempt and queue it again with backoff (at least once)
FAIL = "fail"  # fail it for good: it never runs twice (at most once)
WORKER_LOST_POLICIES = (RETRY, FAIL)


#: Formats of the log lines ``process_tasks`` writes.
LOG_FORMATS = ("text", "json")


#: The environment variable that names this host when the setting does not.
HOST_NAME_ENV = "BACKGROUND_TASK_HOST_NAME"


def _default_host_name() -> str:
    return os.environ.get(HOST_NAME_ENV) or socket.gethostname()


def _host_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255 and ":" not in value


def host_name() -> str:
    """This host's name in worker ids (its first 32 characters) and worker rows:
    BACKGROUND_TASK_HOST_NAME, else the environment variable of that name,
    else the machine's host name."""
    if not django_settings.configured:
        return _default_host_name()
    return app_settings.HOST_NAME


def _listen_database(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, str) and bool(value))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _non_negative_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _ordering(value: Any) -> bool:
    return isinstance(value, str) and value.upper() in ("ASC", "DESC")


def _optional_positive_number(value: Any) -> bool:
    return value is None or (_positive_number(value) and math.isfinite(value))


def _worker_lost_policy(value: Any) -> bool:
    return value in WORKER_LOST_POLICIES


def _optional_ttl(value: Any) -> bool:
    return value is None or (_non_negative_number(value) and math.isfinite(value))


def _retry_policy_problem(value: Any) -> str:
    if value is None:
        return ""
    if callable(value) and not isinstance(value, RetryPolicy):
        return "must be a dict of RetryPolicy fields or a RetryPolicy, not a callable"
    try:
        make_policy(value)
    except (TypeError, ValueError) as exc:
        return f"is not a retry policy: {exc}"
    return ""


@functools.lru_cache(maxsize=8)
def import_serializer(path: str) -> Any:
    """The object a dotted-path setting names (cached)."""
    from django.utils.module_loading import import_string

    return import_string(path)


def _serializer_path(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        serializer = import_serializer(value)
    except ImportError:
        return False
    return callable(getattr(serializer, "dumps", None)) and callable(
        getattr(serializer, "loads", None)
    )


def _callable_path(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return callable(import_serializer(value))
    except ImportError:
        return False


def anyone(request: Any, task: Any = None) -> bool:
    """A permission that lets every request through (a metrics endpoint that
    only the network protects, say)."""
    return True


def staff_only(request: Any, task: Any = None) -> bool:
    """The default status permission: active staff users."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _schedule_setting(value: Any) -> bool:
    return isinstance(value, dict)  # each entry is checked by check id E012


def _autostart_problem(value: Any) -> str:
    try:
        parse_options(value)
    except ValueError as exc:
        return str(exc)
    return ""


def _autostart_setting(value: Any) -> bool:
    return not _autostart_problem(value)


def _timezone_name(value: Any) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str) or not value:
        return False
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _project_timezone() -> str:
    return getattr(django_settings, "TIME_ZONE", None) or "UTC"


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class SettingSpec:
    """One setting: the Django names it is read from (first set one wins)."""

    names: tuple[str, ...]
    default: Any
    is_valid: Callable[[Any], bool]
    expected: str
    check_id: str
    # Says precisely what is wrong with an invalid value (the message goes on
    # after the setting's name); without it, ``expected`` is quoted.
    explain: Callable[[Any], str] | None = None

    def raw(self) -> tuple[str, Any]:
        """Return the name that is set and its value, or the default."""
        for name in self.names:
            value = getattr(django_settings, name, _MISSING)
            if value is not _MISSING:
                return name, value
        default = self.default() if callable(self.default) else self.default
        return self.names[0], default

    def problem(self) -> str | None:
        """Describe what is wrong with the configured value, or return None."""
        return self._problem(*self.raw())

    def _problem(self, name: str, value: Any) -> str | None:
        if self.is_valid(value):
            return None
        if self.explain is not None:
            return f"{name} {self.explain(value)}."
        return f"{name} must be {self.expected}, not {value!r}."

    def value(self) -> Any:
        """The valid value (kept until a setting changes); raise ImproperlyConfigured if invalid."""
        found = _values.get(self.names, _MISSING)
        if found is not _MISSING:
            return found
        name, found = self.raw()
        problem = self._problem(name, found)
        if problem:
            raise ImproperlyConfigured(problem)
        _values[self.names] = found
        return found


SPECS: dict[str, SettingSpec] = {
    "MAX_ATTEMPTS": SettingSpec(
        ("BACKGROUND_TASK_MAX_ATTEMPTS", "MAX_ATTEMPTS"),
        25,
        _positive_int,
        "a positive integer (attempts per task)",
        "background_task.E001",
    ),
    "MAX_RUN_TIME": SettingSpec(
        ("BACKGROUND_TASK_MAX_RUN_TIME", "MAX_RUN_TIME"),
        3600,
        _positive_number,
        "a positive number of seconds",
        "background_task.E002",
    ),
    "RUN_ASYNC": SettingSpec(
        ("BACKGROUND_TASK_RUN_ASYNC",), False, _is_bool, "True or False", "background_task.E003"
    ),
    "ASYNC_THREADS": SettingSpec(
        ("BACKGROUND_TASK_ASYNC_THREADS",),
        _cpu_count,
        _positive_int,
        "a positive integer (threads per worker process)",
        "background_task.E004",
    ),
    "ASYNC_CONCURRENCY": SettingSpec(
        ("BACKGROUND_TASK_ASYNC_CONCURRENCY",),
        100,
        _positive_int,
        "a positive integer (async def tasks awaited at once per worker process)",
        "background_task.E025",
    ),
    "HOST_NAME": SettingSpec(
        ("BACKGROUND_TASK_HOST_NAME",),
        _default_host_name,
        _host_name,
        "a non-empty string of at most 255 characters without ':' (this host's name in worker ids)",
        "background_task.E028",
    ),
    "LISTEN_DATABASE": SettingSpec(
        ("BACKGROUND_TASK_LISTEN_DATABASE",),
        None,
        _listen_database,
        "None (LISTEN on the queue's database unless it is behind a transaction pooler), "
        "False (never LISTEN: poll) or the alias of a direct PostgreSQL connection",
        "background_task.E029",
    ),
    "VACUUM_AFTER": SettingSpec(
        ("BACKGROUND_TASK_VACUUM_AFTER",),
        10_000,
        lambda value: value is None or _positive_int(value),
        "None (leave dead rows to autovacuum) or a positive integer (dead row versions "
        "after which a PostgreSQL worker VACUUMs the queue's tables)",
        "background_task.E034",
    ),
    "PROGRESS_INTERVAL": SettingSpec(
        ("BACKGROUND_TASK_PROGRESS_INTERVAL",),
        0.5,
        lambda value: _positive_number(value) and math.isfinite(value),
        "a positive number of seconds (how often, at most, a running task's reported "
        "progress and metadata are written to its row)",
        "background_task.E035",
    ),
    "LOG_FORMAT": SettingSpec(
        ("BACKGROUND_TASK_LOG_FORMAT",),
        "text",
        lambda value: value in LOG_FORMATS,
        "'text' or 'json' (the format of process_tasks' log lines)",
        "background_task.E036",
    ),
    "PRIORITY_ORDERING": SettingSpec(
        ("BACKGROUND_TASK_PRIORITY_ORDERING",),
        "DESC",
        _ordering,
        "'DESC' (larger priority runs first) or 'ASC' (smaller runs first)",
        "background_task.E005",
    ),
    "SHUTDOWN_TIMEOUT": SettingSpec(
        ("BACKGROUND_TASK_SHUTDOWN_TIMEOUT",),
        30,
        _non_negative_number,
        "a number of seconds >= 0 (grace period for running tasks on shutdown)",
        "background_task.E006",
    ),
    "HEARTBEAT_INTERVAL": SettingSpec(
        ("BACKGROUND_TASK_HEARTBEAT_INTERVAL",),
        5,
        _positive_number,
        "a positive number of seconds (how often a worker reports that it is alive)",
        "background_task.E007",
    ),
    "WORKER_LOST_AFTER": SettingSpec(
        ("BACKGROUND_TASK_WORKER_LOST_AFTER",),
        30,
        _positive_number,
        "a positive number of seconds (heartbeat silence after which a worker counts as lost)",
        "background_task.E008",
    ),
    "SELF_FENCING": SettingSpec(
        ("BACKGROUND_TASK_SELF_FENCING",),
        True,
        lambda value: isinstance(value, bool),
        "True or False (whether a worker cut off from the database stops its own tasks "
        "before others may take them over)",
        "background_task.E030",
    ),
    "FENCE_AFTER": SettingSpec(
        ("BACKGROUND_TASK_FENCE_AFTER",),
        None,
        _optional_positive_number,
        "None (derived from the heartbeat settings) or a positive number of seconds "
        "(heartbeat silence after which a worker stops its own tasks)",
        "background_task.E031",
    ),
    "DEFAULT_TIMEOUT": SettingSpec(
        ("BACKGROUND_TASK_DEFAULT_TIMEOUT",),
        None,
        _optional_positive_number,
        "None or a positive number of seconds (hard time limit of a task run)",
        "background_task.E009",
    ),
    "ON_WORKER_LOST": SettingSpec(
        ("BACKGROUND_TASK_ON_WORKER_LOST",),
        RETRY,
        _worker_lost_policy,
        "'retry' or 'fail' (what becomes of a task whose worker died)",
        "background_task.E010",
    ),
    "RESULT_TTL": SettingSpec(
        ("BACKGROUND_TASK_RESULT_TTL",),
        None,
        _optional_ttl,
        "None (keep finished tasks forever) or a number of seconds >= 0 "
        "(how long a finished task and its result are kept)",
        "background_task.E014",
    ),
    "RETRY_POLICY": SettingSpec(
        ("BACKGROUND_TASK_RETRY_POLICY",),
        None,
        lambda value: not _retry_policy_problem(value),
        "None (1.2.8's backoff) or a dict of RetryPolicy fields: base, exponent, max_delay, jitter",
        "background_task.E024",
        explain=_retry_policy_problem,
    ),
    "SERIALIZER": SettingSpec(
        ("BACKGROUND_TASK_SERIALIZER",),
        None,
        _serializer_path,
        "None or the dotted path of an object with dumps(args, kwargs) -> str and "
        "loads(text) -> (args, kwargs)",
        "background_task.E015",
    ),
    "STATUS_PERMISSION": SettingSpec(
        ("BACKGROUND_TASK_STATUS_PERMISSION",),
        "background_task.conf.staff_only",
        _callable_path,
        "the dotted path of a callable(request) -> bool (who may use the status endpoint)",
        "background_task.E016",
    ),
    "STATUS_DETAILS_PERMISSION": SettingSpec(
        ("BACKGROUND_TASK_STATUS_DETAILS_PERMISSION",),
        "background_task.conf.staff_only",
        _callable_path,
        "the dotted path of a callable(request, task) -> bool (who may see a task's "
        "arguments, result and traceback)",
        "background_task.E017",
    ),
    "METRICS_PERMISSION": SettingSpec(
        ("BACKGROUND_TASK_METRICS_PERMISSION",),
        "background_task.conf.staff_only",
        _callable_path,
        "the dotted path of a callable(request) -> bool (who may read the Prometheus "
        "metrics view; background_task.conf.anyone opens it)",
        "background_task.E037",
    ),
    "INSTRUMENTS": SettingSpec(
        ("BACKGROUND_TASK_INSTRUMENTS",),
        "auto",
        lambda value: (
            value == "auto"
            or (isinstance(value, list | tuple) and all(_callable_path(path) for path in value))
        ),
        "'auto' (the integrations whose library is installed: OpenTelemetry, Prometheus) "
        "or a list of dotted paths of callables that return an Instrument ([] for none)",
        "background_task.E038",
    ),
    "RUN_IMMEDIATELY": SettingSpec(
        ("BACKGROUND_TASK_RUN_IMMEDIATELY",),
        False,
        _is_bool,
        "True or False (run tasks at once in the process that queues them)",
        "background_task.E018",
    ),
    "SCHEDULE": SettingSpec(
        ("BACKGROUND_TASK_SCHEDULE",),
        dict,
        _schedule_setting,
        "a dict of schedules ({name: crontab} or {name: {'task': ..., 'cron': ...}})",
        "background_task.E012",
    ),
    "SCHEDULE_TIMEZONE": SettingSpec(
        ("BACKGROUND_TASK_SCHEDULE_TIMEZONE",),
        _project_timezone,
        _timezone_name,
        "an IANA time zone name such as 'Europe/Berlin' (default: TIME_ZONE)",
        "background_task.E013",
    ),
    "AUTOSTART": SettingSpec(
        ("BACKGROUND_TASK_AUTOSTART",),
        False,
        _autostart_setting,
        "True, False or a dict of options (workers, threads, queues, sleep, "
        "restart_delay, log_file)",
        "background_task.E019",
        explain=_autostart_problem,
    ),
}


def is_set(name: str) -> bool:
    """Whether the project sets this setting at all: a cheap test for the
    per-task paths, which read (and validate) a setting only when it is set.
    Kept, as values are, until a setting changes."""
    found = _present.get(name)
    if found is None:
        found = _present[name] = hasattr(django_settings, name)
    return found


# Legacy pairs whose two names may disagree: (prefixed name, bare name, check id).
LEGACY_PAIRS = (
    ("BACKGROUND_TASK_MAX_ATTEMPTS", "MAX_ATTEMPTS", "background_task.W001"),
    ("BACKGROUND_TASK_MAX_RUN_TIME", "MAX_RUN_TIME", "background_task.W002"),
)


class AppSettings:
    """Typed, lazy access to every setting; also 1.2.8's ``app_settings``."""

    @property
    def MAX_ATTEMPTS(self) -> int:
        """Attempts a task gets before it is failed (``MAX_ATTEMPTS``, default 25)."""
        return int(SPECS["MAX_ATTEMPTS"].value())

    @property
    def MAX_RUN_TIME(self) -> float:
        """Seconds after which a claim counts as abandoned (``MAX_RUN_TIME``, 3600)."""
        return float(SPECS["MAX_RUN_TIME"].value())

    @property
    def RUN_ASYNC(self) -> bool:
        return bool(SPECS["RUN_ASYNC"].value())

    @property
    def ASYNC_THREADS(self) -> int:
        return int(SPECS["ASYNC_THREADS"].value())

    @property
    def HOST_NAME(self) -> str:
        """This host's name in worker ids and worker rows (see :func:`host_name`)."""
        return str(SPECS["HOST_NAME"].value())

    @property
    def LISTEN_DATABASE(self) -> str | bool | None:
        """Where idle PostgreSQL workers LISTEN: None (the queue's database,
        unless pooled), False (nowhere: they poll) or a database alias."""
        value: str | bool | None = SPECS["LISTEN_DATABASE"].value()
        return value

    @property
    def VACUUM_AFTER(self) -> int | None:
        """Dead row versions after which a PostgreSQL worker VACUUMs a queue
        table (10,000, and a fifth of its live rows); None leaves it to autovacuum."""
        value = SPECS["VACUUM_AFTER"].value()
        return None if value is None else int(value)

    @property
    def PROGRESS_INTERVAL(self) -> float:
        """Seconds between two writes of a running task's progress and metadata (0.5)."""
        return float(SPECS["PROGRESS_INTERVAL"].value())

    @property
    def LOG_FORMAT(self) -> str:
        """``"text"`` (the default) or ``"json"``: how process_tasks formats its log."""
        return str(SPECS["LOG_FORMAT"].value())

    @property
    def ASYNC_CONCURRENCY(self) -> int:
        """``async def`` tasks a worker process awaits at once (default 100)."""
        return int(SPECS["ASYNC_CONCURRENCY"].value())

    @property
    def PRIORITY_ORDERING(self) -> str:
        """``"DESC"`` or ``"ASC"``, upper-cased."""
        return str(SPECS["PRIORITY_ORDERING"].value()).upper()

    @property
    def PRIORITY_DESCENDING(self) -> bool:
        return self.PRIORITY_ORDERING == "DESC"

    @property
    def SHUTDOWN_TIMEOUT(self) -> float:
        return float(SPECS["SHUTDOWN_TIMEOUT"].value())

    @property
    def HEARTBEAT_INTERVAL(self) -> float:
        """Seconds between a worker's heartbeats (default 5)."""
        return float(SPECS["HEARTBEAT_INTERVAL"].value())

    @property
    def WORKER_LOST_AFTER(self) -> float:
        """Seconds without a heartbeat after which a worker's tasks are recovered (30)."""
        return float(SPECS["WORKER_LOST_AFTER"].value())

    @property
    def SELF_FENCING(self) -> bool:
        """Whether workers fence themselves (default True; SQLite never needs it)."""
        return bool(SPECS["SELF_FENCING"].value())

    @property
    def FENCE_AFTER(self) -> float:
        """Seconds without a heartbeat going through after which a worker that
        holds tasks kills its own process: the setting, or WORKER_LOST_AFTER
        minus the larger of one heartbeat interval and a fifth of it."""
        value = SPECS["FENCE_AFTER"].value()
        if value is not None:
            return float(value)
        lost_after = self.WORKER_LOST_AFTER
        return lost_after - max(self.HEARTBEAT_INTERVAL, lost_after / 5)

    @property
    def DEFAULT_TIMEOUT(self) -> float | None:
        """Hard time limit, in seconds, of tasks that set none (default None: no limit)."""
        value = SPECS["DEFAULT_TIMEOUT"].value()
        return None if value is None else float(value)

    @property
    def ON_WORKER_LOST(self) -> str:
        """``"retry"`` (default) or ``"fail"``, for tasks that do not choose."""
        return str(SPECS["ON_WORKER_LOST"].value())

    @property
    def RESULT_TTL(self) -> int | None:
        """Seconds a finished task (and its result) is kept unless the task sets
        ``ttl``; None (default): forever, as in 1.2.8."""
        value = SPECS["RESULT_TTL"].value()
        return None if value is None else int(value)

    @property
    def RETRY_POLICY(self) -> Policy:
        """The project's default retry policy: BACKGROUND_TASK_RETRY_POLICY, else
        1.2.8's backoff (``attempts ** 4 + 5`` seconds)."""
        value = SPECS["RETRY_POLICY"].value()
        return DEFAULT_POLICY if value is None else make_policy(value)

    @property
    def SERIALIZER(self) -> Any:
        """The custom argument serializer, or None for the built-in one."""
        path = SPECS["SERIALIZER"].value()
        return None if path is None else import_serializer(path)

    @property
    def STATUS_PERMISSION(self) -> Callable[..., bool]:
        """Who may use the status endpoint: ``callable(request) -> bool``."""
        found: Callable[..., bool] = import_serializer(SPECS["STATUS_PERMISSION"].value())
        return found

    @property
    def STATUS_DETAILS_PERMISSION(self) -> Callable[..., bool]:
        """Who may see a task's arguments and result: ``callable(request, task) -> bool``."""
        found: Callable[..., bool] = import_serializer(SPECS["STATUS_DETAILS_PERMISSION"].value())
        return found

    @property
    def METRICS_PERMISSION(self) -> Callable[..., bool]:
        """Who may read the Prometheus metrics view: ``callable(request) -> bool``."""
        found: Callable[..., bool] = import_serializer(SPECS["METRICS_PERMISSION"].value())
        return found

    @property
    def INSTRUMENTS(self) -> str | list[str]:
        """``"auto"`` or the dotted paths of the instrument factories to install."""
        value = SPECS["INSTRUMENTS"].value()
        return value if value == "auto" else list(value)

    @property
    def RUN_IMMEDIATELY(self) -> bool:
        """Eager mode: queued tasks run at once in process (default False)."""
        return bool(SPECS["RUN_IMMEDIATELY"].value())

    @property
    def SCHEDULE(self) -> dict[str, Any]:
        """Schedules declared in settings (default none)."""
        return dict(SPECS["SCHEDULE"].value())

    @property
    def SCHEDULE_TIMEZONE(self) -> str:
        """The time zone cron and rrule times are read in (default TIME_ZONE)."""
        return str(SPECS["SCHEDULE_TIMEZONE"].value())

    @property
    def AUTOSTART(self) -> AutostartOptions | None:
        """The embedded worker web servers start, or None (default: none)."""
        return parse_options(SPECS["AUTOSTART"].value())

    # The 1.2.8 spellings of the same values.
    @property
    def BACKGROUND_TASK_MAX_ATTEMPTS(self) -> int:
        return self.MAX_ATTEMPTS

    @property
    def BACKGROUND_TASK_MAX_RUN_TIME(self) -> float:
        return self.MAX_RUN_TIME

    @property
    def BACKGROUND_TASK_RUN_ASYNC(self) -> bool:
        return self.RUN_ASYNC

    @property
    def BACKGROUND_TASK_ASYNC_THREADS(self) -> int:
        return self.ASYNC_THREADS

    @property
    def BACKGROUND_TASK_PRIORITY_ORDERING(self) -> str:
        """The ORDER BY prefix 1.2.8 exposed: ``"-"`` for DESC, ``""`` for ASC."""
        return "-" if self.PRIORITY_DESCENDING else ""


app_settings = AppSettings()
