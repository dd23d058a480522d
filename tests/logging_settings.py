"""Test settings whose worker logs go to stderr (for subprocess assertions)."""

import os

from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # BGTASK_LOG_CREATED: each line starts with its time.time() (the chaos tests).
    "formatters": {
        "plain": {
            "format": (
                "%(created).6f %(message)s"
                if os.environ.get("BGTASK_LOG_CREATED")
                else "%(message)s"
            )
        }
    },
    "loggers": {
        "background_task": {
            "handlers": ["stderr"],
            "level": os.environ.get("BGTASK_LOG_LEVEL", "INFO"),
        }
    },
}
