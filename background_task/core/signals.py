"""Signals sent around the life of a task, with the same names, senders and
arguments as django-background-tasks 1.2.8.

============== ======================= ==================================
signal         sender                  keyword arguments
============== ======================= ==================================
task_created   ``DBTaskRunner``        ``task``: the saved Task
task_started   ``Task``                none
task_error     the exception's class   ``task``
task_rescheduled ``Task``              ``task``: new ``run_at`` already set
task_failed    ``Task``                ``task_id``, ``completed_task``
task_successful ``Task``               ``task_id``, ``completed_task``
task_finished  ``Task``                none
============== ======================= ==================================

A receiver that raises never changes the recorded outcome of a task: the
worker logs the receiver's error and goes on.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

task_created = Signal()
task_error = Signal()
task_rescheduled = Signal()
task_failed = Signal()
task_successful = Signal()
task_started = Signal()
task_finished = Signal()


def listened(signal: Signal, sender: Any) -> bool:
    """``signal.has_listeners(sender)``, answered without a lookup when no
    receiver is connected to ``signal`` at all (the hot paths ask per task)."""
    return bool(signal.receivers) and signal.has_listeners(sender)
