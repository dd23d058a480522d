"""The queue on a database of its own, chosen by Django's database routers.

Unit tests of the routing rules run on the suite's database; the end-to-end
scenario (tests/routed_scenario.py) runs in a subprocess with two real
databases: SQLite as ``default`` with the queue on PostgreSQL, and
PostgreSQL as ``default`` with the queue on MariaDB. It runs in the SQLite
passes only (it brings its own databases).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.core import checks
from django.db import connection
from django.test import override_settings

from background_task.checks import check_routing
from background_task.store.models import CompletedTask, Task, WorkerProcess
from background_task.store.routing import deferring_to, queue_alias, queue_immediately
from tests.conftest import ROOT
from tests.run_suite import CI, mysql_reachable, postgres_reachable


class OtherRouter:
    """Sends the queue's models to ``other`` (an alias these tests never query)."""

    def db_for_write(self, model, **hints):
        return "other" if model._meta.app_label == "background_task" else None

    def db_for_read(self, model, **hints):
        return self.db_for_write(model)

    def allow_migrate(self, db, app_label, **hints):
        return db == "other" if app_label == "background_task" else None


class ReplicaRouter(OtherRouter):
    """Writes on ``other``, reads from ``replica``."""

    def db_for_read(self, model, **hints):
        return "replica" if model._meta.app_label == "background_task" else None


class SplitRouter(OtherRouter):
    """Only the history elsewhere: the queue's tables split over two databases."""

    def db_for_write(self, model, **hints):
        return "other" if model is CompletedTask else None


def databases(*aliases: str) -> dict[str, dict]:
    settings = {"default": connection.settings_dict}
    settings.update({alias: dict(connection.settings_dict) for alias in aliases})
    return settings


# Extra aliases copied from the suite's database: never connected to here.
overrides_databases = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


@overrides_databases
def test_the_queue_follows_the_routers_and_reads_where_it_writes():
    assert queue_alias() == "default"
    with override_settings(
        DATABASES=databases("other", "replica"), DATABASE_ROUTERS=[ReplicaRouter()]
    ):
        assert queue_alias() == "other"
        assert queue_alias("explicit") == "explicit"
        # Reads go where writes go, not to the replica the router names.
        assert Task.objects.all().db == "other"
        assert Task.objects.filter(pk=1).db == "other"
        assert CompletedTask.objects.all().db == "other"
        assert WorkerProcess.objects.db == "other"
        assert Task.objects.using("default").db == "default"
    assert queue_alias() == "default"  # forgotten when the settings change back


@overrides_databases
def test_checks_report_split_tables_and_replica_reads():
    with override_settings(DATABASES=databases("other"), DATABASE_ROUTERS=[SplitRouter()]):
        assert [message.id for message in check_routing()] == ["background_task.E026"]
    with override_settings(
        DATABASES=databases("other", "replica"), DATABASE_ROUTERS=[ReplicaRouter()]
    ):
        messages = check_routing()
        assert [message.id for message in messages] == ["background_task.W003"]
        assert messages[0].level == checks.WARNING and "'replica'" in messages[0].msg
    with override_settings(DATABASE_ROUTERS=[OtherRouter()]):  # "other" is not configured
        assert [message.id for message in check_routing()] == ["background_task.E027"]
    assert check_routing() == []


@pytest.mark.django_db(transaction=True)
def test_one_database_never_defers():
    from django.db import transaction

    with transaction.atomic():
        assert deferring_to("default") is None
    with queue_immediately():
        assert deferring_to("default") is None


def _pairs():
    pairs = []
    for default, queue, probe in (
        ("sqlite", "postgres", postgres_reachable),
        ("postgres", "mysql", lambda: postgres_reachable() or mysql_reachable()),
    ):
        reason = probe()
        marks = []
        if reason is not None:
            marks.append(
                pytest.mark.xfail(reason=reason, strict=True) if CI else pytest.mark.skip(reason)
            )
        pairs.append(pytest.param(default, queue, marks=marks, id=f"{default}+{queue}"))
    return pairs


@pytest.mark.parametrize(("default", "queue"), _pairs())
def test_a_routed_queue_never_touches_the_default_database(default, queue, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("runs in the SQLite passes (it brings its own databases)")
    guard = tmp_path / "guard.log"
    guard.write_text("")
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.routed_settings",
        PYTHONPATH=ROOT,
        PYTHONUNBUFFERED="1",
        ROUTED_DEFAULT=default,
        ROUTED_QUEUE=queue,
        ROUTED_NAME=f"bgtask_routed_{uuid.uuid4().hex[:8]}",
        ROUTED_GUARD_LOG=str(guard),
    )
    result = subprocess.run(
        [sys.executable, "tests/routed_scenario.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.rstrip().endswith("ok"), result.stdout
    assert guard.read_text() == ""
