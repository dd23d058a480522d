"""Paused queues: workers claim nothing from them; queueing and running tasks go on."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import reverse

import background_task
from background_task.models import CompletedTask, PausedQueue, Task
from background_task.runtime.worker import Worker
from background_task.tasks import tasks
from tests.conftest import drain, wait_until
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def test_pause_and_resume_say_whether_they_changed_anything():
    assert background_task.pause_queue("records", reason="provider down")
    assert not background_task.pause_queue("records")
    assert background_task.pause_queue(None)
    rows = background_task.paused_queues()
    assert [(row.name, row.reason) for row in rows] == [(None, ""), ("records", "provider down")]
    assert background_task.resume_queue("records")
    assert not background_task.resume_queue("records")
    assert background_task.resume_queue(None)
    assert background_task.paused_queues() == []


def test_bad_queue_names_and_reasons_are_refused():
    with pytest.raises(ValueError, match="Queue name 'xxx"):
        background_task.pause_queue("x" * 200)
    with pytest.raises(TypeError, match="Queue name must be a string, not int 5"):
        background_task.pause_queue(5)
    with pytest.raises(TypeError, match="reason must be a string"):
        background_task.pause_queue("a", reason=3)


def test_a_worker_claims_nothing_from_a_paused_queue_and_the_rest_flows(clock):
    background_task.pause_queue("records")
    paused = [fixtures.record(str(n)) for n in range(3)]
    other = fixtures.noop()
    drain(clock)
    assert CompletedTask.objects.filter(task_id=other.task_id).exists()
    assert Task.objects.filter(pk__in=[task.pk for task in paused], status="waiting").count() == 3
    background_task.resume_queue("records")
    drain(clock)
    assert Execution.objects.filter(task_name="record").count() == 3
    assert not Task.objects.exists()


def test_the_default_queue_can_be_paused(clock):
    background_task.pause_queue(None)
    default = fixtures.noop()
    named = fixtures.record("a")
    drain(clock)
    assert Task.objects.filter(pk=default.pk).exists()
    assert not Task.objects.filter(pk=named.pk).exists()


def test_a_worker_of_paused_queues_only_does_not_claim_at_all(clock):
    background_task.pause_queue("records")
    fixtures.record("a")
    worker = Worker(clock=clock, sleep=0.01, queues=["records"])
    assert worker.step() == 0
    assert Task.objects.filter(status="waiting").count() == 1


def test_a_running_worker_sees_a_pause_within_a_second(clock):
    worker = Worker(clock=clock, sleep=0.01)
    assert worker.step() == 0  # reads the paused queues: none
    background_task.pause_queue("records")
    time.sleep(1.05)
    fixtures.record("a")
    clock.advance(5)  # the task is due
    assert worker.step() == 0
    background_task.resume_queue("records")
    time.sleep(1.05)
    assert worker.step() == 1


def test_run_next_task_leaves_paused_queues_alone():
    background_task.pause_queue("records")
    fixtures.record("a")
    assert not tasks.run_next_task()
    background_task.resume_queue("records")
    assert tasks.run_next_task()


def test_queueing_into_a_paused_queue_works():
    background_task.pause_queue("records")
    task = fixtures.record("a")
    assert Task.objects.get(pk=task.pk).status == "waiting"


def test_the_commands_pause_and_resume():
    out = io.StringIO()
    call_command("pause_queue", "records", "--reason", "incident 42", stdout=out)
    call_command("pause_queue", "records", stdout=out)
    assert out.getvalue().splitlines() == [
        "Queue records paused.",
        "Queue records was paused already.",
    ]
    status = io.StringIO()
    fixtures.record("a")
    call_command("task_status", stdout=status)
    text = status.getvalue()
    assert "records (paused)" in text and "Paused: records since" in text
    assert "incident 42" in text
    data = io.StringIO()
    call_command("task_status", "--json", stdout=data)
    snapshot = json.loads(data.getvalue())
    assert snapshot["queues"]["records"]["paused"] is True
    assert snapshot["paused_queues"][0]["queue"] == "records"
    out = io.StringIO()
    call_command("resume_queue", "records", stdout=out)
    call_command("resume_queue", "", stdout=out)
    assert out.getvalue().splitlines() == [
        "Queue records resumed.",
        "Queue <default> was not paused.",
    ]
    with pytest.raises(CommandError, match="Queue name"):
        call_command("pause_queue", "x" * 200)


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def test_the_admin_pauses_and_resumes_queues(admin_client):
    task = fixtures.record("a")
    changelist = reverse("admin:background_task_task_changelist")
    admin_client.post(changelist, {"action": "pause_queues", "_selected_action": [task.pk]})
    assert [row.name for row in background_task.paused_queues()] == ["records"]
    page = admin_client.get(reverse("admin:background_task_dashboard")).content.decode()
    assert "bgtask-paused" in page and "records" in page
    listing = admin_client.get(reverse("admin:background_task_pausedqueue_changelist"))
    assert listing.status_code == 200 and "paused in the admin by admin" in listing.content.decode()
    admin_client.post(changelist, {"action": "resume_queues", "_selected_action": [task.pk]})
    assert background_task.paused_queues() == []
    # Adding a row pauses; deleting it resumes.
    admin_client.post(
        reverse("admin:background_task_pausedqueue_add"), {"queue": "mail", "reason": "x"}
    )
    row = PausedQueue.objects.get()
    assert row.name == "mail" and row.paused_at is not None
    admin_client.post(
        reverse("admin:background_task_pausedqueue_changelist"),
        {"action": "resume", "_selected_action": [row.pk]},
    )
    assert not PausedQueue.objects.exists()


def test_the_status_endpoint_lists_paused_queues(client):
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    background_task.pause_queue("records", reason="maintenance")
    data = client.get(reverse("background_task:task-list")).json()
    assert data["paused_queues"][0]["queue"] == "records"
    assert data["paused_queues"][0]["reason"] == "maintenance"


def test_a_real_worker_stops_claiming_and_starts_again(start_worker):
    worker = start_worker("--sleep", "5")
    try:
        background_task.pause_queue("records")
        time.sleep(1.5)  # a running worker sees the pause within a second
        paused = fixtures.record("paused")
        other = fixtures.noop()
        wait_until(lambda: CompletedTask.objects.filter(task_id=other.task_id).exists())
        time.sleep(1.0)
        assert Task.objects.get(pk=paused.pk).status == "waiting"
        background_task.resume_queue("records")
        # An idle worker with a paused queue looks again every second.
        wait_until(lambda: Execution.objects.filter(key="paused").exists(), timeout=5)
    finally:
        worker.signal()
        code, output = worker.wait()
    assert code == 0, output
