"""Records every query about the queue's tables that reaches the ``default`` database.

With ROUTED_GUARD_LOG set, each such statement is appended to that file (from
the test process and from every worker it starts) and refused, so a path that
ignores the routers fails loudly even where an error would be caught.
"""

from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _guard(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    if "background_task" in str(sql):
        with open(os.environ["ROUTED_GUARD_LOG"], "a") as log:
            log.write(f"{os.getpid()}: {sql}\n")
        raise RuntimeError(f"a query about the queue reached the default database: {sql}")
    return execute(sql, params, many, context)


def _install(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.alias == "default" and os.environ.get("ROUTED_GUARD_LOG"):
        connection.execute_wrappers.append(_guard)


class RoutedAppConfig(AppConfig):
    name = "tests.routedapp"
    label = "routedapp"

    def ready(self) -> None:
        connection_created.connect(_install, dispatch_uid="tests.routedapp.guard")
