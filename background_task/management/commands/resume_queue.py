"""``manage.py resume_queue QUEUE``: workers claim a paused queue's tasks again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from background_task.api.queues import resume_queue


class Command(BaseCommand):
    help = "Resume a paused queue: workers claim its waiting tasks again within a second."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="The queue's name ('' for the default queue).")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["queue"] or None
        try:
            resumed = resume_queue(name)
        except (TypeError, ValueError) as error:
            raise CommandError(str(error)) from error
        label = name or "<default>"
        self.stdout.write(
            f"Queue {label} resumed." if resumed else f"Queue {label} was not paused."
        )
