"""Test settings with the queue on a database of its own (``queue``), routed there.

ROUTED_DEFAULT (sqlite or postgres) and ROUTED_QUEUE (postgres or mysql) pick
the engines. The ``default`` database holds Django's own tables and the
fixture app's; the routers send every model of ``background_task`` to
``queue`` (contenttypes is migrated on both: the creator column's foreign
key points at it). tests/routedapp records any query about the queue's
tables that reaches ``default``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from tests.settings import *  # noqa: F403

#: Database names (and the SQLite file's), unique per test run.
NAME = os.environ.get("ROUTED_NAME", "bgtask_routed")
_SQLITE = os.path.join(tempfile.gettempdir(), NAME + "-default.sqlite3")


def _database(engine: str, name: str) -> dict[str, Any]:
    if engine == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _SQLITE,
            "TEST": {"NAME": _SQLITE},
            "OPTIONS": {"timeout": 30},
        }
    if engine == "postgres":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "TEST": {"NAME": name},
        }
    if engine == "mysql":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": name, "CHARSET": "utf8mb4"},
        }
    raise RuntimeError(f"unknown engine {engine!r}")


DATABASES = {
    "default": _database(os.environ.get("ROUTED_DEFAULT", "sqlite"), NAME + "_default"),
    "queue": _database(os.environ.get("ROUTED_QUEUE", "postgres"), NAME + "_queue"),
}
DATABASE_ROUTERS = ["tests.routed_settings.QueueRouter"]
INSTALLED_APPS = [*INSTALLED_APPS, "tests.routedapp.apps.RoutedAppConfig"]  # noqa: F405
BACKGROUND_TASK_SCHEDULE = {
    "tick": {"task": "tests.testapp.tasks.record", "seconds": 1, "args": ["tick"]},
}
BACKGROUND_TASK_HEARTBEAT_INTERVAL = 1.0
BACKGROUND_TASK_WORKER_LOST_AFTER = 5.0
BACKGROUND_TASK_SHUTDOWN_TIMEOUT = 5.0


class QueueRouter:
    """background_task's models on ``queue``; everything else on ``default``."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "queue" if model._meta.app_label == "background_task" else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "queue" if model._meta.app_label == "background_task" else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return True  # a task's creator (a generic relation) lives on default

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label == "background_task":
            return db == "queue"
        if app_label == "contenttypes":
            return True
        return db == "default"


# Workers' warnings and errors reach the scenario's output.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"background_task": {"handlers": ["console"], "level": "INFO"}},
}
