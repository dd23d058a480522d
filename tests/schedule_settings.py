"""Test settings with a schedule that fires every second (for worker subprocess tests)."""

from tests.logging_settings import *  # noqa: F403

BACKGROUND_TASK_SCHEDULE = {
    "tick": {
        "task": "tests.testapp.tasks.record",
        "seconds": 1,
        "args": ["tick"],
        "overlap": True,
        "catch_up": "all",
    }
}
