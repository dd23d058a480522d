"""``manage.py list_schedules``: the schedules, their next and last runs (``--json``)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from background_task.runtime.scheduler import describe
from background_task.store.models import Schedule


class Command(BaseCommand):
    help = "List the periodic, cron and rrule schedules with their next and last runs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [describe(schedule) for schedule in Schedule.objects.all()]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write(
                "No schedules. Declare them with @periodic_task, @cron_task or "
                "BACKGROUND_TASK_SCHEDULE; workers sync them when they start."
            )
            return
        columns = [
            "name",
            "expression",
            "timezone",
            "next_run_at",
            "last_run_at",
            "last_outcome",
            "state",
        ]
        table = [[str(row[column] or "-") for column in columns] for row in rows]
        widths = [
            max(len(column), *(len(line[i]) for line in table)) for i, column in enumerate(columns)
        ]
        self.stdout.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for line in table:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
