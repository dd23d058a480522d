"""``manage.py process_tasks``: run the worker.

Parses and checks the options, sets up logging, discovers tasks, and hands
off to :class:`background_task.runtime.worker.Worker` (or, with ``--workers``, to a
supervisor of several worker processes).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from background_task.api.periodic import ScheduleError
from background_task.api.registry import autodiscover, tasks
from background_task.core.conf import LOG_FORMATS, app_settings
from background_task.core.exceptions import TaskDiscoveryError
from background_task.runtime import scheduler
from background_task.runtime.jsonlog import JsonFormatter
from background_task.runtime.logstream import LogStream

logger = logging.getLogger(__name__)

LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def _number(minimum: float, label: str, kind: type = float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{label} must be a number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{label} must be at least {minimum}, not {text}")
        return value

    return parse


class Command(BaseCommand):
    help = "Run tasks that are due, and keep running them as they come due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--duration",
            type=float,
            default=0,
            help="Stop after this many seconds (0, the default, or less: run forever).",
        )
        parser.add_argument(
            "--sleep",
            type=_number(0.0, "--sleep"),
            default=5.0,
            help="Seconds to wait before looking again when nothing is due (default 5).",
        )
        parser.add_argument("--queue", help="Only run tasks of this queue.")
        parser.add_argument("--queues", help="Only run tasks of these queues (comma separated).")
        parser.add_argument(
            "--log-std",
            action="store_true",
            help="Send what tasks write to stdout/stderr to the log.",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Run what is due, then exit (for system cron).",
        )
        parser.add_argument(
            "--max-tasks",
            type=_number(1, "--max-tasks", int),
            default=None,
            help="Exit after this many tasks.",
        )
        parser.add_argument(
            "--workers",
            type=_number(1, "--workers", int),
            default=1,
            help="Worker processes to run under one supervisor (default 1).",
        )
        parser.add_argument(
            "--threads",
            type=_number(1, "--threads", int),
            default=None,
            help="Tasks run at once per process (default 1, or "
            "BACKGROUND_TASK_ASYNC_THREADS when BACKGROUND_TASK_RUN_ASYNC is set).",
        )
        parser.add_argument(
            "--async-concurrency",
            type=_number(1, "--async-concurrency", int),
            default=None,
            help="async def tasks awaited at once per process, on its event loop "
            "(default 100, or BACKGROUND_TASK_ASYNC_CONCURRENCY).",
        )
        parser.add_argument(
            "--log-file",
            metavar="PATH",
            help="Also write the log to this file (reopened when rotated: move it away and "
            "the worker starts a new one).",
        )
        parser.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            default=None,
            help="text (the default, or BACKGROUND_TASK_LOG_FORMAT) or json: one JSON object "
            "per line with the worker, task and outcome of each line.",
        )
        parser.add_argument(
            "--metrics-port",
            type=_number(1, "--metrics-port", int),
            default=None,
            metavar="PORT",
            help="Serve each worker process's Prometheus counters on PORT + n (n = 0 to "
            "--workers - 1). Needs prometheus-client.",
        )
        parser.add_argument(
            "--metrics-address",
            default="0.0.0.0",
            metavar="ADDRESS",
            help="The address --metrics-port listens on (default 0.0.0.0).",
        )
        parser.add_argument(
            "--backend",
            action="append",
            metavar="ALIAS",
            help="Run django.tasks tasks of this TASKS alias (repeatable; default: every alias "
            "using background_task.backends.DatabaseBackend). Django 6.0 or later.",
        )
        parser.add_argument(
            "--dev",
            "--reload",
            dest="reload",
            action="store_true",
            help="Restart the worker when code changes (development only).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.configure_logging(
            options["verbosity"],
            options["log_file"],
            options["log_format"] or app_settings.LOG_FORMAT,
        )
        queues = self.parse_queues(options["queue"], options["queues"])
        threads = options["threads"]
        if threads is None:
            threads = app_settings.ASYNC_THREADS if app_settings.RUN_ASYNC else 1
        worker_options = {
            "queues": queues,
            "sleep": options["sleep"],
            "duration": max(options["duration"], 0.0),
            "burst": options["burst"],
            "max_tasks": options["max_tasks"],
            "threads": threads,
            "async_concurrency": options["async_concurrency"] or app_settings.ASYNC_CONCURRENCY,
        }
        try:
            autodiscover()
            scheduler.definitions(tasks)  # bad schedules stop the command here
        except (TaskDiscoveryError, ScheduleError) as exc:
            raise CommandError(str(exc)) from exc
        worker_options["backends"] = self.django_task_backends(options["backend"])
        metrics = self.metrics_server(
            options["metrics_port"], options["metrics_address"], options["workers"]
        )

        def run() -> None:
            if options["log_std"]:
                self.redirect_std()
            self.run_workers(options["workers"], worker_options, metrics)

        if options["reload"]:
            from django.utils import autoreload

            autoreload.run_with_reloader(run)
        else:
            run()

    def django_task_backends(self, aliases: list[str] | None) -> list[str]:
        """The django.tasks aliases to serve (none before Django 6.0)."""
        try:
            from background_task.contrib.django_tasks import serving
        except (ImportError, ImproperlyConfigured):
            if aliases:
                raise CommandError("--backend needs Django 6.0 or later (django.tasks).") from None
            return []
        try:
            return serving(aliases)
        except Exception as exc:  # an unknown alias, or one of another backend
            raise CommandError(f"--backend: {exc}") from exc

    def parse_queues(self, queue: str | None, queues: str | None) -> list[str] | None:
        names = [queue] if queue else []
        if queues is not None:
            names += [name.strip() for name in queues.split(",")]
            if not all(names):
                raise CommandError(f"--queues has an empty queue name: {queues!r}")
        for name in names:
            if len(name) > 190:
                raise CommandError(f"Queue name {name[:40]!r}... is longer than 190 characters.")
        return names or None

    def metrics_server(
        self, port: int | None, address: str, workers: int
    ) -> Callable[[int], None] | None:
        """What starts a worker process's metrics server on ``port`` + its
        index, or None without ``--metrics-port``."""
        if port is None:
            return None
        if port + workers - 1 > 65535:
            raise CommandError(
                f"--metrics-port {port} with --workers {workers} needs ports up to "
                f"{port + workers - 1}; the last port is 65535."
            )
        try:
            from background_task.contrib.prometheus import serve_process_metrics
        except ImportError as exc:
            raise CommandError(f"--metrics-port: {exc}") from None

        def start(index: int) -> None:
            try:
                serve_process_metrics(port + index, address)
            except OSError as exc:
                logger.error(
                    "Could not serve metrics on %s:%d (%s); the worker runs without.",
                    address,
                    port + index,
                    exc,
                )
            else:
                logger.info("Serving Prometheus metrics on %s:%d.", address, port + index)

        return start

    def run_workers(
        self,
        count: int,
        worker_options: dict[str, Any],
        metrics: Callable[[int], None] | None = None,
    ) -> None:
        """Run ``count`` worker processes under a supervisor (hard time limits,
        immediate recovery of a dead worker's tasks, restarts)."""
        from background_task.runtime.supervisor import ChildContext, Supervisor
        from background_task.runtime.worker import Worker

        def work(context: ChildContext) -> None:
            if metrics is not None:
                metrics(context.index)
            Worker(
                **worker_options,
                slots=context.slots,
                supervisor_id=context.supervisor_id,
                parent_pid=context.parent_pid,
            ).run()

        supervisor = Supervisor(
            count,
            work,
            threads=worker_options["threads"],
            async_concurrency=worker_options["async_concurrency"],
            shutdown_timeout=app_settings.SHUTDOWN_TIMEOUT,
            queues=worker_options["queues"],
        )
        code = supervisor.run()
        if code:
            raise CommandError(f"A worker process exited with code {code}.", returncode=code)

    def configure_logging(
        self, verbosity: int, log_file: str | None = None, log_format: str = "text"
    ) -> None:
        """Log to stderr unless the project configured logging; with
        ``log_file``, also to that file, reopened when it is rotated away.

        With ``log_format="json"`` every line this process writes is JSON:
        the handlers the project configured (on the root and the package's
        logger) are given the JSON formatter too."""
        package_logger = logging.getLogger("background_task")
        formatter: logging.Formatter = logging.Formatter(
            "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
        )
        if log_format == "json":
            formatter = JsonFormatter()
            for handler in [*logging.getLogger().handlers, *package_logger.handlers]:
                handler.setFormatter(formatter)
        if not package_logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(formatter)
            package_logger.addHandler(handler)
            package_logger.setLevel(LEVELS.get(verbosity, logging.INFO))
        if log_file:
            try:
                file_handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"--log-file {log_file}: {exc}") from exc
            file_handler.setFormatter(formatter)
            file_handler.setLevel(LEVELS.get(verbosity, logging.INFO))
            package_logger.addHandler(file_handler)
            if package_logger.level == logging.NOTSET or package_logger.level > logging.INFO:
                package_logger.setLevel(min(LEVELS.get(verbosity, logging.INFO), logging.INFO))

    def redirect_std(self) -> None:
        std_logger = logging.getLogger(__name__)
        sys.stdout = LogStream(std_logger, logging.INFO, sys.__stdout__ or sys.stdout)
        sys.stderr = LogStream(std_logger, logging.ERROR, sys.__stderr__ or sys.stderr)
