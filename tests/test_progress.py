"""Progress and metadata a running task reports: validation, throttled
writes, and reading them back from the handle, the history, the status
endpoint and ``task_status`` while the task runs in a real worker process."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from background_task import status
from background_task.core.progress import MAX_MESSAGE, Progress, make_progress, merge_meta
from background_task.models import CompletedTask, Task
from background_task.runtime.reports import writer_for
from background_task.store.routing import queue_alias
from tests.conftest import drain, wait_until
from tests.testapp import tasks as fixtures

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


# -- the pure part --------------------------------------------------------------------


def test_progress_has_a_percentage_only_with_a_total():
    assert make_progress(3, 4, "three", now=NOW).percent == 75.0
    assert make_progress(1, 3, now=NOW).percent == 33.3
    assert make_progress(7, now=NOW).percent is None
    stored = make_progress(2, 8, "two", now=NOW).as_json()
    assert Progress.from_json(stored) == Progress(2, 8, "two", NOW)
    assert Progress.from_json(stored).describe()["percent"] == 25.0


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        ((-1,), ValueError, "done must be a finite number >= 0"),
        ((math.nan,), ValueError, "done must be a finite number >= 0"),
        ((True,), ValueError, "done must be"),
        (("3",), ValueError, "done must be"),
        ((1, 0), ValueError, "total must be a finite number > 0"),
        ((1, math.inf), ValueError, "total must be"),
        ((5, 4), ValueError, r"done \(5\) is more than total \(4\)"),
        ((1, 2, 3), TypeError, "message must be a string or None, not int"),
        ((1, 2, "x" * (MAX_MESSAGE + 1)), ValueError, "at most 1000 are stored"),
    ],
)
def test_bad_progress_is_refused_with_what_is_wrong(args, error, words):
    with pytest.raises(error, match=words):
        make_progress(*args, now=NOW)


def test_meta_merges_and_refuses_what_json_cannot_hold():
    assert merge_meta({"a": 1}, {"b": [2], "a": 3}) == {"a": 3, "b": [2]}
    assert merge_meta(None, {}) == {}
    with pytest.raises(TypeError, match="the value of 'when' is a datetime"):
        merge_meta({}, {"when": NOW})
    with pytest.raises(ValueError, match="at most 64000 are stored"):
        merge_meta({}, {"blob": "x" * 70_000})


# -- in this process ------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
def test_the_last_report_is_kept_in_the_history(clock):
    task = fixtures.progress_loop(500)
    drain(clock)
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.status == status.DONE
    assert (done.progress.done, done.progress.total, done.progress.percent) == (500, 500, 100.0)
    assert done.progress.updated_at is not None


@pytestmark_db
def test_a_tight_loop_costs_a_few_writes_a_second(clock, settings):
    settings.BACKGROUND_TASK_PROGRESS_INTERVAL = 0.25
    writer = writer_for(queue_alias(None))
    before = writer.writes
    task = fixtures.progress_loop(200_000)
    started = time.monotonic()
    drain(clock)
    took = time.monotonic() - started
    writes = writer.writes - before
    # The first report at once, then at most one per interval.
    assert 1 <= writes <= math.ceil(took / 0.25) + 2, (writes, took)
    assert CompletedTask.objects.get(task_id=task.task_id).progress.done == 200_000


@pytestmark_db
def test_a_retry_keeps_what_the_failed_attempt_reported(clock):
    task = fixtures.progress_then_fail(3)
    drain(clock)
    waiting = Task.objects.get(task_id=task.task_id)
    assert waiting.status == status.WAITING and waiting.attempts == 1
    assert waiting.progress.message == "failed after 3" and waiting.meta == {"attempt": 1}
    clock.advance(3600)
    drain(clock)
    failed = CompletedTask.objects.get(task_id=task.task_id)
    assert failed.status == status.ERROR and failed.meta == {"attempt": 2}
    assert (failed.progress.done, failed.progress.total) == (3, 6)


@pytestmark_db
def test_a_task_that_reports_nothing_has_no_progress(clock):
    task = fixtures.noop()
    assert task.progress is None and task.meta == {}
    drain(clock)
    done = CompletedTask.objects.get(task_id=task.task_id)
    assert done.progress is None and done.meta == {}


# -- a real worker process ------------------------------------------------------------


def _running_progress(task_id: str):
    task = Task.objects.filter(task_id=task_id).first()
    return task.progress if task is not None else None


@pytestmark_db
@pytest.mark.parametrize("fixture", ["progress_gate", "async_progress_gate"])
def test_progress_is_seen_while_the_task_runs_and_after(
    fixture, start_worker, tmp_path, admin_client
):
    gate = tmp_path / "go"
    task = getattr(fixtures, fixture)(str(gate))
    worker = start_worker("--sleep", "0.1")
    first = 5 if fixture == "progress_gate" else 1
    wait_until(lambda: (p := _running_progress(task.task_id)) is not None and p.done == first, 60)
    handle = task.refresh()
    assert handle.status == status.RUNNING
    assert handle.progress.message in ("half way", "started")
    assert handle.meta in ({"stage": "waiting", "path": str(gate)}, {"kind": "async"})
    # The status endpoint and task_status show it too.
    answer = admin_client.get(f"/tasks/{task.task_id}/").json()
    assert answer["progress"]["done"] == first and answer["meta"] == handle.meta
    out = _task_status_json()
    [running] = [row for row in out["running_tasks"] if row["task_id"] == task.task_id]
    assert running["progress"]["done"] == first
    gate.write_text("go")
    done = task.wait(timeout=60)
    assert done.status == status.DONE and done.progress.percent == 100.0
    assert done.progress.message in ("all done", "finished")
    worker.signal()
    assert worker.wait(60)[0] == 0


def _task_status_json() -> dict:
    from io import StringIO

    out = StringIO()
    call_command("task_status", "--json", stdout=out)
    return json.loads(out.getvalue())


def _report(task: Task, done: float, total: float | None, message: str | None, **meta) -> None:
    """Store a report on a row as a worker's writer would."""
    Task.objects.filter(pk=task.pk).update(
        status=status.RUNNING,
        locked_by="host:1:abc",
        locked_at=NOW,
        progress_json=make_progress(done, total, message, now=NOW).as_json(),
        meta_json=meta or None,
    )


@pytestmark_db
def test_the_admin_shows_a_progress_bar_and_the_metadata(admin_client):
    task = fixtures.noop()
    _report(task, 3, 4, "three <of> four", rows=3)
    page = admin_client.get("/admin/background_task/task/").content.decode()
    assert '<progress value="75.0" max="100"' in page
    assert "three &lt;of&gt; four" in page  # escaped
    detail = admin_client.get(f"/admin/background_task/task/{task.pk}/change/").content.decode()
    assert "75%" in detail and "&quot;rows&quot;: 3" in detail


@pytestmark_db
def test_the_dashboard_lists_running_tasks_with_their_progress(admin_client):
    task = fixtures.noop()
    _report(task, 2, 8, "a quarter")
    idle = fixtures.noop()
    Task.objects.filter(pk=idle.pk).update(status=status.RUNNING, locked_by="h:2:x", locked_at=NOW)
    page = admin_client.get("/admin/background_task/task/dashboard/").content.decode()
    section = page[page.index('id="bgtask-running"') :]
    assert task.task_id in section and idle.task_id in section
    assert '<progress value="25.0" max="100">' in section and "a quarter" in section


@pytestmark_db
def test_task_status_prints_running_tasks_and_their_progress():
    task = fixtures.noop()
    _report(task, 1, 2, "half")
    from io import StringIO

    out = StringIO()
    call_command("task_status", stdout=out)
    text = out.getvalue()
    assert "Running (longest first):" in text
    [line] = [line for line in text.splitlines() if task.task_id in line]
    assert "1/2 (50%) half" in line


@pytestmark_db
def test_the_status_endpoint_shows_meta_only_with_the_details_permission(
    client, django_user_model, settings
):
    task = fixtures.noop()
    _report(task, 1, 2, "half", secret="x")
    settings.BACKGROUND_TASK_STATUS_PERMISSION = "tests.status_permissions.allow_all"
    settings.BACKGROUND_TASK_STATUS_DETAILS_PERMISSION = "tests.status_permissions.deny_all"
    answer = client.get(f"/tasks/{task.task_id}/").json()
    assert answer["progress"]["percent"] == 50.0 and "meta" not in answer
