"""JSON log lines: ``process_tasks --log-format json`` (or BACKGROUND_TASK_LOG_FORMAT).

:class:`JsonFormatter` writes one JSON object per record, on one line, with
the fields a log aggregator indexes: ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, ``pid``, the ``worker_id`` of the process's worker,
and, where they apply, ``task_id``, ``task_name``, ``queue``, ``attempt``,
``outcome`` and ``duration`` (seconds). A worker's own lines about a run
carry them as ``extra``; a line logged by a task's code while it runs gets
them from :func:`~background_task.current_task`. A record with an exception
adds ``exception`` (the formatted traceback).

Projects that configure ``LOGGING`` themselves can use it there:
``"formatters": {"json": {"()": "background_task.runtime.jsonlog.JsonFormatter"}}``.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from background_task.core.current import current_task

#: Fields a record may carry as ``extra`` (the worker's lines about a run).
TASK_FIELDS = ("task_id", "task_name", "queue", "attempt", "outcome", "duration")

_worker_id: str | None = None


def set_worker_id(worker_id: str | None) -> None:
    """Name this process's worker in every JSON line (the worker calls this)."""
    global _worker_id
    _worker_id = worker_id


def run_fields(
    task_id: str, task_name: str, queue: str | None, attempt: int, **more: Any
) -> dict[str, Any]:
    """The ``extra`` of a worker's log line about one run of a task."""
    return {
        "task_id": task_id,
        "task_name": task_name,
        "queue": queue,
        "attempt": attempt,
        **more,
    }


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process if record.process is not None else os.getpid(),
        }
        worker_id = getattr(record, "worker_id", None) or _worker_id
        if worker_id:
            data["worker_id"] = worker_id
        fields = {name: getattr(record, name) for name in TASK_FIELDS if hasattr(record, name)}
        if "task_id" not in fields:
            running = current_task()
            if running is not None:
                task = running.task
                fields.update(
                    task_id=task.task_id,
                    task_name=task.task_name,
                    queue=task.queue,
                    attempt=running.attempt,
                )
        if isinstance(fields.get("duration"), float):
            fields["duration"] = round(fields["duration"], 6)
        data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)
