from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.utils import timezone

from background_task.tasks import DBTaskRunner, Tasks


class RecordingRunner(DBTaskRunner):
    """Leaves an Execution row per task it runs, then runs it as 1.2.8 did."""

    def run_task(self, tasks: Tasks, task: Any) -> None:
        from tests.testapp.models import Execution

        Execution.objects.create(
            task_name=f"runner:{task.task_name}", key=task.locked_by, started_at=timezone.now()
        )
        super().run_task(tasks, task)


class RunnerAppConfig(AppConfig):
    name = "tests.runnerapp"

    def ready(self) -> None:
        from background_task.tasks import tasks

        tasks._runner = RecordingRunner()
