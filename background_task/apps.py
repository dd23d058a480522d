"""The Django app configuration: where the layers are plugged together."""

from __future__ import annotations

import django
from django.apps import AppConfig
from django.core import checks


class BackgroundTasksAppConfig(AppConfig):
    """Registers the system checks and the layers' hooks and, in a web server
    process with ``BACKGROUND_TASK_AUTOSTART``, starts the embedded worker;
    does no database work at startup."""

    name = "background_task"
    verbose_name = "Background Tasks"
    # 1.2.8's tables use 32-bit ids; keep them so no migration appears for
    # projects whose DEFAULT_AUTO_FIELD is BigAutoField.
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        # Imported here, not at the top: this module is loaded before the
        # models are. Each provider registers what it offers to the layers
        # below it (see background_task.core.hooks).
        import background_task.api.registry
        import background_task.core.signals
        import background_task.runtime.inprocess
        import background_task.store.workflows

        if django.VERSION >= (6, 0):
            import background_task.contrib.django_tasks  # noqa: F401 (how its rows are run)
        from background_task.checks import check_settings

        checks.register(check_settings, "background_task")
        # Metrics and traces, when their libraries are installed (or as configured).
        from background_task.contrib.instrumenting import install_configured

        install_configured()
        # In a web server process only, and only with BACKGROUND_TASK_AUTOSTART.
        from background_task.runtime.autostart import start_if_serving

        start_if_serving()
