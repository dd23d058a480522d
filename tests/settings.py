"""Settings of the test project; the database comes from the environment.

DB_BACKEND is sqlite (default), postgres or mysql; DB_NAME, DB_USER,
DB_PASSWORD, DB_HOST and DB_PORT override the defaults of each. On
PostgreSQL, DB_PREPARED=1 turns on server-side binding and prepared
statements, DB_DRIVER=psycopg2 runs on psycopg2 instead of psycopg 3, and
DB_POOLED=1 says DB_PORT is a transaction-mode PgBouncer (tests/pooler.py).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import django

BACKEND = os.environ.get("DB_BACKEND", "sqlite")
DATABASES: dict[str, dict[str, Any]]

if BACKEND == "sqlite":
    _name = os.environ.get("DB_NAME") or os.path.join(tempfile.gettempdir(), "bgtask-tests.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _name,
            # A file, not memory, so that worker subprocesses see the same data.
            "TEST": {"NAME": os.environ.get("DB_TEST_NAME") or _name + ".test"},
            "OPTIONS": {"timeout": 30},
        }
    }
elif BACKEND == "postgres":
    if os.environ.get("DB_DRIVER") == "psycopg2":
        # Django picks psycopg 3 when it can import it; make it fail, so
        # this process (and the workers it starts) run on psycopg2.
        import sys

        sys.modules["psycopg"] = None  # type: ignore[assignment]
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DB_NAME", "postgres"),
            "USER": os.environ.get("DB_USER", "postgres"),
            "PASSWORD": os.environ.get("DB_PASSWORD", ""),
            "HOST": os.environ.get("DB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DB_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("DB_TEST_NAME", "test_bgtask")},
            # DB_PREPARED=1: server-side binding and prepared statements, the
            # tuning docs/performance.md suggests where no pooler is in between.
            "OPTIONS": (
                {"server_side_binding": True, "prepare_threshold": 5}
                if os.environ.get("DB_PREPARED")
                else {}
            ),
        }
    }
    if os.environ.get("DB_POOLED"):
        # Through a transaction-mode pooler (tests/pooler.py): Django's marker
        # for it, and a direct connection for LISTEN when BGTASK_LISTEN_DATABASE
        # names it.
        DATABASES["direct"] = {**DATABASES["default"], "PORT": "5432"}
        DATABASES["default"] = {**DATABASES["default"], "DISABLE_SERVER_SIDE_CURSORS": True}
        if os.environ.get("BGTASK_LISTEN_DATABASE"):
            BACKGROUND_TASK_LISTEN_DATABASE = os.environ["BGTASK_LISTEN_DATABASE"]
elif BACKEND == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("DB_NAME", "test"),
            "USER": os.environ.get("DB_USER", "root"),
            "PASSWORD": os.environ.get("DB_PASSWORD", ""),
            "HOST": os.environ.get("DB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DB_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {
                "NAME": os.environ.get("DB_TEST_NAME", "test_bgtask"),
                "CHARSET": "utf8mb4",
            },
        }
    }
else:
    raise RuntimeError(f"DB_BACKEND must be sqlite, postgres or mysql, not {BACKEND!r}")

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"  # the admin's styles, for the browser test
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "background_task",
    "tests.testapp.apps.TestAppConfig",
]
if os.environ.get("BGTASK_TEST_RUNNER"):
    # A project's DBTaskRunner subclass as tasks._runner (tests/runnerapp).
    INSTALLED_APPS.append("tests.runnerapp.apps.RunnerAppConfig")

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"background_task": {"handlers": ["null"], "level": "DEBUG"}},
}

# Worker subprocess tests shorten the shutdown grace period through the environment.
BACKGROUND_TASK_SHUTDOWN_TIMEOUT = float(os.environ.get("BGTASK_SHUTDOWN_TIMEOUT", "30"))

# Reliability tests shorten heartbeats and hard time limits through the environment.
BACKGROUND_TASK_HEARTBEAT_INTERVAL = float(os.environ.get("BGTASK_HEARTBEAT_INTERVAL", "5"))
BACKGROUND_TASK_WORKER_LOST_AFTER = float(os.environ.get("BGTASK_WORKER_LOST_AFTER", "30"))
# BGTASK_SELF_FENCING=0: workers that do not fence themselves (tests of what fencing prevents).
BACKGROUND_TASK_SELF_FENCING = os.environ.get("BGTASK_SELF_FENCING", "1") != "0"

# BGTASK_VACUUM_AFTER: dead rows after which PostgreSQL workers VACUUM (test_upkeep).
if os.environ.get("BGTASK_VACUUM_AFTER"):
    BACKGROUND_TASK_VACUUM_AFTER = int(os.environ["BGTASK_VACUUM_AFTER"])

# Django 6.1 configures email through MAILERS (EMAIL_BACKEND is deprecated).
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}

# django.tasks (Django 6.0+): two aliases served by background_task.
if django.VERSION >= (6, 0):
    TASKS = {
        "default": {
            "BACKEND": "background_task.backends.DatabaseBackend",
            "QUEUES": ["default", "emails"],
        },
        "retrying": {
            "BACKEND": "background_task.backends.DatabaseBackend",
            "QUEUES": [],
            "OPTIONS": {"MAX_ATTEMPTS": 3},
        },
    }

# Embedded-worker tests switch BACKGROUND_TASK_AUTOSTART on (JSON) through the environment.
if os.environ.get("BGTASK_AUTOSTART"):
    import json

    BACKGROUND_TASK_AUTOSTART = json.loads(os.environ["BGTASK_AUTOSTART"])
