"""Settings of the demo project: SQLite next to this file."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))

SECRET_KEY = "demo-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "background_task",
    "demo.shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(HERE, "db.sqlite3"),
        # WAL lets readers (the progress display) run while workers write;
        # IMMEDIATE transactions take the write lock up front, so concurrent
        # writers queue instead of failing with "database is locked".
        "OPTIONS": {
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
BACKGROUND_TASK_MAX_ATTEMPTS = 3
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "file": {"class": "logging.FileHandler", "filename": os.path.join(HERE, "worker.log")}
    },
    "loggers": {"background_task": {"handlers": ["file"], "level": "INFO"}},
}
