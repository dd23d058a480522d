"""Which database the queue lives on.

The queue's tables live on the alias Django's database routers choose for
writing its models (``db_for_write``, asked without hints), ``"default"``
when no router has an opinion. Every read of queue state goes there too: a
replica's lag would show a task as waiting after it ran. The answer is
worked out once and forgotten when DATABASE_ROUTERS or DATABASES change
(``override_settings`` in tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.apps import apps
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections, router

_alias: str | None = None
_several: bool | None = None  # more than one database configured
_immediate: ContextVar[bool] = ContextVar("background_task_queue_immediately", default=False)


def queue_alias(using: str | None = None) -> str:
    """``using`` if given, else the alias the routers pick for the queue's writes."""
    if using:
        return using
    global _alias
    alias = _alias
    if alias is None:
        model = apps.get_model("background_task", "Task")
        alias = _alias = router.db_for_write(model) or DEFAULT_DB_ALIAS
    return alias


def routes() -> dict[str, tuple[str, str]]:
    """Each of the app's models: the aliases the routers pick for (writes, reads)."""
    return {
        model.__name__: (
            router.db_for_write(model) or DEFAULT_DB_ALIAS,
            router.db_for_read(model) or DEFAULT_DB_ALIAS,
        )
        for model in apps.get_app_config("background_task").get_models()
    }


def deferring_to(alias: str) -> str | None:
    """The alias of another database whose transaction is open while the
    queue's own database (``alias``) is outside one: a task queued now is
    stored when that transaction commits, and not at all if it rolls back.

    None, so the task is stored at once, with one database, inside a
    transaction on the queue's database (the row is then part of it), or
    within :func:`queue_immediately`.
    """
    global _several
    several = _several
    if several is None:
        several = _several = len(connections.settings) > 1
    if not several or connections[alias].in_atomic_block or _immediate.get():
        return None
    for connection in connections.all(initialized_only=True):
        if connection.alias != alias and connection.in_atomic_block:
            return connection.alias
    return None


@contextmanager
def queue_immediately() -> Iterator[None]:
    """Store the tasks queued inside this block at once, even inside a
    transaction on a database other than the queue's (which would otherwise
    delay them to its commit): ``with background_task.queue_immediately(): ...``."""
    token = _immediate.set(True)
    try:
        yield
    finally:
        _immediate.reset(token)


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _alias, _several
    if setting in ("DATABASE_ROUTERS", "DATABASES"):
        _alias = _several = None


setting_changed.connect(_forget, dispatch_uid="background_task.store.routing")
