"""Exceptions raised by django-background-task.

The tree::

    BackgroundTaskError                 base of everything raised here
    ├── InvalidTaskError                a task that must not be retried (1.2.8 name)
    ├── TaskNotRegistered (LookupError) a task name no ``@background`` registered
    ├── TaskDiscoveryError              a ``tasks`` module raised while being imported
    ├── TaskTimeout                     recorded when a run overran its hard time limit
    └── WorkerLost                      recorded when the worker running a task died

Configuration problems raise Django's ``ImproperlyConfigured``.
"""

from __future__ import annotations

from typing import Any


class BackgroundTaskError(Exception):
    """Base class of the errors of this package; keeps 1.2.8's ``errors`` attribute."""

    def __init__(self, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.errors = errors


class InvalidTaskError(BackgroundTaskError):
    """Raised by a task to fail at once, without further attempts."""


class TaskNotRegistered(BackgroundTaskError, LookupError):
    """A task name that no decorated function registered in this process."""


class TaskDiscoveryError(BackgroundTaskError):
    """An app's ``tasks`` module exists but raised while being imported."""


class TaskTimeout(BackgroundTaskError):
    """Recorded as the error of a run that overran its ``timeout`` and was killed."""


class WorkerLost(BackgroundTaskError):
    """Recorded as the error of a run whose worker died or stopped heartbeating."""
