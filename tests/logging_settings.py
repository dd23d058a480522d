"""Test settings whose worker logs go to stderr (for subprocess assertions)."""

import os

from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "formatters": {},
    "loggers": {
        "background_task": {
            "handlers": ["stderr"],
            "level": os.environ.get("BGTASK_LOG_LEVEL", "INFO"),
        }
    },
}
