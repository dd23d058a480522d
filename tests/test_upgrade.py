"""A database built and filled by the real django-background-tasks 1.2.8 upgrades in place.

`make test` installs 1.2.8 into .venv/legacy-1.2.8 (BGTASK_LEGACY_PATH overrides).
The test builds a scratch database with 1.2.8 (its migrations, its decorator,
its worker for one task), then runs this package's `migrate` and worker on it.
"""

import json
import os
import subprocess
import sys
import tempfile
import uuid

import pytest
from django.db import connection

from tests.conftest import ROOT, subprocess_env

LEGACY = os.environ.get("BGTASK_LEGACY_PATH", os.path.join(ROOT, ".venv", "legacy-1.2.8"))
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scratch_database():
    if not os.path.isdir(os.path.join(LEGACY, "background_task")):
        message = f"django-background-tasks 1.2.8 is not installed in {LEGACY}"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"bgtask_upgrade_{uuid.uuid4().hex[:8]}"
    if connection.vendor == "sqlite":
        path = os.path.join(tempfile.mkdtemp(), name + ".sqlite3")
        yield path
        return
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name}")


def run(args, *, db_name, legacy=False):
    env = subprocess_env(DB_NAME=db_name, DJANGO_SETTINGS_MODULE="tests.upgrade_settings")
    if legacy:
        env["PYTHONPATH"] = os.pathsep.join([LEGACY, ROOT])
    result = subprocess.run(
        [sys.executable, *args],
        cwd=tempfile.gettempdir() if legacy else ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_1_2_8_database_upgrades_in_place_and_its_tasks_run(scratch_database):
    filled = json.loads(
        run([os.path.join(ROOT, "tests", "upgrade_fill.py")], db_name=scratch_database, legacy=True)
    )
    assert filled["package"].startswith(LEGACY)
    assert (filled["tasks"], filled["completed"]) == (7, 1)

    run(["-m", "django", "migrate", "-v0"], db_name=scratch_database)
    before = json.loads(
        run([os.path.join(ROOT, "tests", "upgrade_check.py")], db_name=scratch_database)
    )
    by_key = {json.loads(row["task_params"])[0][0]: row for row in before["tasks"]}
    assert by_key["queued"]["priority"] == "5" and by_key["queued"]["queue"] == "q1"
    assert by_key["created"]["verbose_name"] == "made by a user"
    assert by_key["created"]["creator_object_id"] is not None
    assert by_key["retried"]["attempts"] == "2"
    assert by_key["stuck"]["status"] == "running" and by_key["plain"]["status"] == "waiting"
    assert all(row["task_id"].startswith("legacy-") for row in before["tasks"])
    [old_completed] = before["completed"]
    assert (
        old_completed["task_id"].startswith("legacy-completed-")
        and old_completed["status"] == "done"
    )

    run(["-m", "django", "process_tasks", "--burst"], db_name=scratch_database)
    after = json.loads(
        run([os.path.join(ROOT, "tests", "upgrade_check.py")], db_name=scratch_database)
    )
    ran = {key: package for key, package in after["runs"]}
    assert ran["done-by-1.2.8"] == "1.2.8"
    for key in ("plain", "queued", "created", "repeating", "retried"):
        assert ran[key] != "1.2.8", key
    assert "future" not in ran
    left = {json.loads(row["task_params"])[0][0]: row for row in after["tasks"]}
    # The stale 1.2.8 lock was recovered: back in the queue with the attempt counted.
    assert left["stuck"]["status"] == "waiting" and left["stuck"]["locked_by"] is None
    assert left["stuck"]["attempts"] == "1"
    assert left["future"]["status"] == "waiting"
    assert left["repeating"]["repeat"] == "3600"  # the next run of the chain
    completed_ids = {row["task_id"] for row in after["completed"]}
    assert by_key["queued"]["task_id"] in completed_ids
