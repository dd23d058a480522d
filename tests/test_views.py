"""The JSON status endpoint: who sees what."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse

from background_task.runtime.worker import Worker
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished(clock):
    task = fixtures.add(20, 22, schedule=0, verbose_name="alice")
    Worker(clock=clock, sleep=0.01).step()
    return task


def login(client, name, staff=False):
    user = User.objects.create_user(name, password="pw", is_staff=staff)
    client.force_login(user)
    return user


def test_anonymous_and_plain_users_are_refused_by_default(client, finished):
    url = reverse("background_task:task-status", args=[finished.task_id])
    response = client.get(url)
    assert response.status_code == 401 and "args" not in response.json()
    login(client, "bob")
    assert client.get(url).status_code == 403
    assert client.get(reverse("background_task:task-list")).status_code == 403


def test_staff_see_status_arguments_and_result(client, finished):
    login(client, "admin", staff=True)
    data = client.get(reverse("background_task:task-status", args=[finished.task_id])).json()
    assert (data["status"], data["attempts"], data["result"]) == ("done", 1, 42)
    assert (data["args"], data["kwargs"]) == ([20, 22], {})
    assert data["task_name"] == "tests.testapp.tasks.add" and data["finished_at"]
    missing = client.get(reverse("background_task:task-status", args=["nope"]))
    assert missing.status_code == 404


def test_a_failed_task_shows_its_error_summary(client, clock):
    task = fixtures.fail_invalid(schedule=0)
    Worker(clock=clock, sleep=0.01).step()
    login(client, "admin", staff=True)
    data = client.get(reverse("background_task:task-status", args=[task.task_id])).json()
    assert data["status"] == "error"
    assert data["error"]["exception"] == "background_task.exceptions.InvalidTaskError"
    assert "Traceback" in data["traceback"]


@override_settings(
    BACKGROUND_TASK_STATUS_PERMISSION="tests.status_permissions.logged_in",
    BACKGROUND_TASK_STATUS_DETAILS_PERMISSION="tests.status_permissions.own_tasks",
)
def test_custom_permissions_show_details_only_where_allowed(client, finished):
    other = fixtures.add(1, 1, schedule=0, verbose_name="carol")
    login(client, "alice")
    mine = client.get(reverse("background_task:task-status", args=[finished.task_id])).json()
    assert mine["result"] == 42 and mine["args"] == [20, 22]
    theirs = client.get(reverse("background_task:task-status", args=[other.task_id])).json()
    assert theirs["status"] == "waiting"
    assert "args" not in theirs and "result" not in theirs and "traceback" not in theirs


def test_the_list_filters_by_queue_and_status(client, finished):
    fixtures.record("queued", schedule=60)
    login(client, "admin", staff=True)
    url = reverse("background_task:task-list")
    everything = client.get(url).json()
    assert everything["count"] == 2
    waiting = client.get(url, {"status": "waiting"}).json()["tasks"]
    assert [t["task_name"] for t in waiting] == ["tests.testapp.tasks.record"]
    records = client.get(url, {"queue": "records"}).json()["tasks"]
    assert [t["queue"] for t in records] == ["records"]
    default_queue = client.get(url, {"queue": ""}).json()["tasks"]
    assert [t["task_id"] for t in default_queue] == [finished.task_id]
    assert client.get(url, {"status": "sleeping"}).status_code == 400
    assert client.get(url, {"limit": "many"}).status_code == 400
    assert client.get(url, {"limit": "1"}).json()["count"] == 1
