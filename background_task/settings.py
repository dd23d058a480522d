"""The 1.2.8 import path of the settings object; see :mod:`background_task.core.conf`."""

from background_task.core.conf import AppSettings, app_settings

__all__ = ["AppSettings", "app_settings"]
