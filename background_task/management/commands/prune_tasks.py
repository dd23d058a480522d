"""``manage.py prune_tasks``: delete finished tasks from the history."""

from __future__ import annotations

import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from background_task.store import pruning


class Command(BaseCommand):
    help = (
        "Delete finished tasks from the history: those whose ttl has run out, and with "
        "--older-than (and --status) older ones."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            help="Also delete finished tasks older than this (seconds, or 30m, 12h, 7d, 2w).",
        )
        parser.add_argument(
            "--status",
            help="Only finished tasks with these statuses (comma separated: done,error,cancelled).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=pruning.PRUNE_BATCH, help="Rows per DELETE."
        )
        parser.add_argument(
            "--pause",
            type=float,
            default=0.0,
            help="Seconds to wait between two DELETEs, leaving the database to running "
            "workers while a large history goes (default 0).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        statuses = [s.strip() for s in (options["status"] or "").split(",") if s.strip()]
        try:
            older_than = (
                pruning.parse_duration(options["older_than"]) if options["older_than"] else None
            )
            expired = pruning.expired(now)
            if statuses:
                expired = expired.filter(status__in=pruning.finished_statuses(statuses))
            selections = [("expired", expired)]
            if older_than is not None:
                selections.append(
                    (
                        f"older than {options['older_than']}",
                        pruning.history(now, older_than=older_than, statuses=statuses),
                    )
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if not (options["pause"] >= 0 and math.isfinite(options["pause"])):
            raise CommandError(f"--pause must be 0 or more seconds, not {options['pause']}.")
        total = 0
        for label, rows in selections:
            count = rows.count()
            if options["dry_run"]:
                self.stdout.write(f"Would delete {count} finished task(s) ({label}).")
                continue
            if not count:
                self.stdout.write(f"Nothing to delete ({label}).")
                continue

            def report(done: int, count: int = count, label: str = label) -> None:
                self.stdout.write(f"  {label}: {min(done, count)}/{count} deleted")

            deleted = pruning.delete_in_batches(
                rows, batch=options["batch_size"], progress=report, pause=options["pause"]
            )
            total += deleted
            self.stdout.write(f"Deleted {deleted} finished task(s) ({label}).")
        if not options["dry_run"]:
            self.stdout.write(f"Done: {total} deleted.")
