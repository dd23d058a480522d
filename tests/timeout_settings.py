"""Test settings with a default hard time limit and a short MAX_RUN_TIME from the environment."""

import os

from tests.logging_settings import *  # noqa: F403

if os.environ.get("BACKGROUND_TASK_DEFAULT_TIMEOUT_TEST"):
    BACKGROUND_TASK_DEFAULT_TIMEOUT = float(os.environ["BACKGROUND_TASK_DEFAULT_TIMEOUT_TEST"])
if os.environ.get("BACKGROUND_TASK_MAX_RUN_TIME_TEST"):
    BACKGROUND_TASK_MAX_RUN_TIME = float(os.environ["BACKGROUND_TASK_MAX_RUN_TIME_TEST"])
