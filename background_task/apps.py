"""The Django app configuration."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class BackgroundTasksAppConfig(AppConfig):
    """Registers the system checks and, in a web server process with
    ``BACKGROUND_TASK_AUTOSTART``, starts the embedded worker; does no
    database work at startup."""

    name = "background_task"
    verbose_name = "Background Tasks"
    # 1.2.8's tables use 32-bit ids; keep them so no migration appears for
    # projects whose DEFAULT_AUTO_FIELD is BigAutoField.
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from background_task.checks import check_settings
        from background_task.core import signals  # noqa: F401

        checks.register(check_settings, "background_task")
        # In a web server process only, and only with BACKGROUND_TASK_AUTOSTART.
        from background_task.runtime.autostart import start_if_serving

        start_if_serving()
