"""``manage.py pause_queue QUEUE``: workers stop claiming the queue's tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from background_task.api.queues import pause_queue


class Command(BaseCommand):
    help = (
        "Pause a queue: within a second no worker claims its tasks; queueing still works "
        "and running tasks finish. Undo with resume_queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="The queue's name ('' for the default queue).")
        parser.add_argument("--reason", default="", help="Why, shown with the paused queue.")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["queue"] or None
        try:
            paused = pause_queue(name, reason=options["reason"])
        except (TypeError, ValueError) as error:
            raise CommandError(str(error)) from error
        label = name or "<default>"
        self.stdout.write(
            f"Queue {label} paused." if paused else f"Queue {label} was paused already."
        )
