"""``manage.py requeue_tasks``: put failed or cancelled tasks back in the queue, with progress."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from background_task.core import status
from background_task.store.models import CompletedTask
from background_task.store.pruning import parse_duration

BATCH = 500  # tasks read per query (each is requeued in its own transaction)


class Command(BaseCommand):
    help = (
        "Queue failed (or cancelled) tasks again under their task ids, due now, with their "
        "attempts reset; prints progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            default=status.ERROR,
            help="Statuses to requeue, comma separated: error (default), cancelled.",
        )
        parser.add_argument("--task-name", help="Only tasks of this name.")
        parser.add_argument("--queue", help="Only tasks of this queue ('' for the default one).")
        parser.add_argument(
            "--since", help="Only tasks that finished within this long (30m, 12h, 7d)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be requeued; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = [s.strip() for s in options["status"].split(",") if s.strip()]
        allowed = {status.ERROR, status.CANCELLED}
        if not statuses or set(statuses) - allowed:
            raise CommandError(
                f"--status takes error and/or cancelled, not {options['status']!r} "
                f"(successful tasks are not run again)."
            )
        rows = CompletedTask.objects.filter(status__in=statuses)
        if options["task_name"]:
            rows = rows.filter(task_name=options["task_name"])
        if options["queue"] is not None:
            rows = rows.filter(queue=options["queue"] or None)
        if options["since"]:
            try:
                since = parse_duration(options["since"])
            except ValueError as exc:
                raise CommandError(f"--since: {exc}") from exc
            rows = rows.filter(run_at__gte=timezone.now() - since)
        total = rows.count()
        if options["dry_run"]:
            self.stdout.write(f"Would requeue {total} task(s).")
            return
        done = 0
        while done < total:
            batch = list(rows.order_by("pk")[:BATCH])
            if not batch:
                break
            for task in batch:
                task.requeue()
            done += len(batch)
            self.stdout.write(f"  {min(done, total)}/{total} requeued")
        self.stdout.write(f"Requeued {done} task(s).")
