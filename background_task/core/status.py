"""The states of a task, importable without loading models."""

from __future__ import annotations

WAITING = "waiting"  # queued, due now or later
RUNNING = "running"  # claimed by a worker
BLOCKED = "blocked"  # due, waiting for a free slot of its concurrency limit
DONE = "done"  # finished successfully (CompletedTask)
ERROR = "error"  # failed for good (CompletedTask)
CANCELLED = "cancelled"  # cancelled before it ran (CompletedTask)

CHOICES = [
    (WAITING, "waiting"),
    (RUNNING, "running"),
    (BLOCKED, "blocked"),
    (DONE, "done"),
    (ERROR, "error"),
    (CANCELLED, "cancelled"),
]
PENDING = (WAITING, RUNNING)
FINISHED = (DONE, ERROR, CANCELLED)
