"""Exceptions raised by django-background-task.

The tree::

    BackgroundTaskError                 base of everything raised here
    ├── InvalidTaskError                a task that must not be retried (1.2.8 name)
    │   ├── ArgumentGone                a model argument's row was deleted (a DoesNotExist)
    │   ├── BadTaskRow                  a row's arguments are unreadable or do not fit the function
    │   └── ResultNotSerializable       a task that keeps results returned what JSON cannot hold
    ├── TaskNotRegistered (LookupError) a task name no ``@background`` registered
    ├── TaskNotFound (LookupError)      no task with that task id (never queued, or pruned)
    ├── TaskDiscoveryError              a ``tasks`` module raised while being imported
    ├── Retry                           raised by a task to ask for another attempt
    ├── TaskCancelled                   raised by a task that stops because it was cancelled
    ├── TaskTimeout                     recorded when a run overran its hard time limit
    ├── WorkerLost                      recorded when the worker running a task died
    └── ClaimLost                       a worker's claim on a task was taken over

Configuration problems raise Django's ``ImproperlyConfigured``. Every class
here reports ``background_task.exceptions`` as its module, the 1.2.8 import
path, which is what a failed attempt's ``exception_class_path`` records.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist


class BackgroundTaskError(Exception):
    """Base class of the errors of this package; keeps 1.2.8's ``errors`` attribute."""

    def __init__(self, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.errors = errors


class InvalidTaskError(BackgroundTaskError):
    """Raised by a task to fail at once, without further attempts."""


class ArgumentGone(InvalidTaskError, ObjectDoesNotExist):
    """A model instance passed to a task was deleted before the task ran; the
    run fails for good (it would fail the same way again)."""


class TaskNotRegistered(BackgroundTaskError, LookupError):
    """A task name that no decorated function registered in this process."""


class TaskNotFound(BackgroundTaskError, LookupError):
    """No task with that task id is queued, running or in the history."""


class TaskDiscoveryError(BackgroundTaskError):
    """An app's ``tasks`` module exists but raised while being imported."""


class Retry(BackgroundTaskError):
    """Raised by a task to ask for another attempt.

    The attempt counts; the task runs again after ``delay`` seconds (or a
    timedelta), or after the usual backoff when ``delay`` is None, as long as
    attempts remain (``max_attempts``); otherwise it fails for good.
    """

    def __init__(self, delay: Any = None, reason: str = "") -> None:
        from datetime import timedelta

        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0
        ):
            raise ValueError(f"Retry delay must be a number of seconds >= 0, not {delay!r}.")
        super().__init__(reason or "the task asked to be retried")
        self.delay: float | None = delay
        self.reason = reason


class TaskCancelled(BackgroundTaskError):
    """Raised by a task that stops early because ``cancel_requested`` is set;
    the run is recorded as cancelled, not failed, and is not retried."""


class TaskTimeout(BackgroundTaskError):
    """Recorded as the error of a run that overran its ``timeout`` and was killed."""


class WorkerLost(BackgroundTaskError):
    """Recorded as the error of a run whose worker died or stopped heartbeating."""


class BadTaskRow(InvalidTaskError):
    """The row cannot be run: corrupt arguments or arguments that do not fit."""


class ResultNotSerializable(InvalidTaskError):
    """A task whose result is kept returned something JSON cannot hold."""


class ClaimLost(BackgroundTaskError):
    """The claim token no longer matches: another worker took the task over."""


# Stored error records and pickles name the public path, not this module's.
for _class in list(globals().values()):
    if isinstance(_class, type) and issubclass(_class, BackgroundTaskError):
        _class.__module__ = "background_task.exceptions"
del _class
