import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from background_task.models import CompletedTask, Task
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(user)
    return client


def test_changelists_and_detail_pages_render(admin_client):
    task = fixtures.add(1, 2)
    task.lock("w")
    CompletedTask.objects.create(
        task_name="x",
        task_params="[[], {}]",
        task_hash="h",
        run_at=timezone.now(),
        failed_at=timezone.now(),
        last_error="Traceback: boom",
    )
    for url in (
        reverse("admin:background_task_task_changelist"),
        reverse("admin:background_task_task_changelist") + "?failed=yes&queue=records",
        reverse("admin:background_task_completedtask_changelist") + "?failed=yes",
        reverse("admin:background_task_task_change", args=[task.pk]),
        reverse(
            "admin:background_task_completedtask_change", args=[CompletedTask.objects.get().pk]
        ),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    detail = admin_client.get(reverse("admin:background_task_task_change", args=[task.pk]))
    assert b"&quot;" not in detail.content or b"<pre>" in detail.content


def test_the_workers_page_shows_heartbeat_age_and_running_tasks(admin_client):
    from background_task.models import WorkerProcess
    from background_task.runtime.liveness import Liveness

    Liveness("web1:77:abcdef01", queues=["mail", None], concurrency=2).register()
    task = fixtures.add(1, 2, schedule=0)
    task.lock("web1:77:abcdef01")
    WorkerProcess.objects.create(
        worker_id="gone:1:00000000",
        host="gone",
        pid=1,
        version="0",
        started_at=timezone.now(),
        heartbeat_at=timezone.now() - timezone.timedelta(hours=1),
    )
    response = admin_client.get(reverse("admin:background_task_workerprocess_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "web1:77:abcdef01" in page and "mail, &lt;default&gt;" in page
    assert "(lost)" in page
    assert 'class="field-running_tasks">1<' in page
    add = admin_client.get(reverse("admin:background_task_workerprocess_add"))
    assert add.status_code == 403


def post_action(client, model, action, pks):
    return client.post(
        reverse(f"admin:background_task_{model}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def test_run_now_and_priority_actions(admin_client):
    later = fixtures.noop(schedule=3600, priority=1)
    post_action(admin_client, "task", "run_now", [later.pk])
    later.refresh_from_db()
    assert later.run_at <= timezone.now()
    post_action(admin_client, "task", "inc_priority", [later.pk])
    post_action(admin_client, "task", "inc_priority", [later.pk])
    post_action(admin_client, "task", "dec_priority", [later.pk])
    later.refresh_from_db()
    assert later.priority == 2


def test_retry_failed_puts_the_task_back_under_the_same_id(admin_client):
    task = fixtures.fail()
    task.failed_at = timezone.now()
    failed = task.create_completed_task()
    Task.objects.all().delete()
    ok = CompletedTask.objects.create(
        task_name="y", task_params="[[], {}]", task_hash="h", run_at=timezone.now()
    )
    response = post_action(admin_client, "completedtask", "retry_failed", [failed.pk, ok.pk])
    assert b"1 task(s) queued again; 1 selected task(s) had not failed" in response.content
    again = Task.objects.get()
    assert again.task_id == failed.task_id and again.attempts == 0 and again.status == "waiting"
    assert list(CompletedTask.objects.all()) == [ok]


def test_actions_respect_permissions(client):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_task"))
    client.force_login(user)
    task = fixtures.noop(schedule=3600)
    response = client.get(reverse("admin:background_task_task_changelist"))
    assert response.status_code == 200
    assert b"run_now" not in response.content
    post_action(client, "task", "run_now", [task.pk])
    task.refresh_from_db()
    assert task.run_at > timezone.now()


def test_the_schedules_page_lists_and_controls_schedules(admin_client):
    from background_task.api.registry import Tasks
    from background_task.models import Schedule
    from background_task.runtime import scheduler

    registry = Tasks()
    registry.cron_task("30 2 * * *", name="tests.testapp.tasks.record", args=["nightly"])(
        fixtures.record.task_function
    )
    scheduler.sync(scheduler.definitions(registry), timezone.now())
    schedule = Schedule.objects.get()
    url = reverse("admin:background_task_schedule_changelist")
    page = admin_client.get(url).content.decode()
    assert "tests.testapp.tasks.record" in page and "30 2 * * *" in page
    assert (
        admin_client.get(
            reverse("admin:background_task_schedule_change", args=[schedule.pk])
        ).status_code
        == 200
    )

    def act(action):
        return admin_client.post(url, {"action": action, "_selected_action": [schedule.pk]})

    act("disable")
    assert not Schedule.objects.get().enabled
    act("enable")
    assert Schedule.objects.get().enabled
    act("run_now")
    task = Task.objects.get()
    assert task.task_name == "tests.testapp.tasks.record" and task.params() == (["nightly"], {})
    assert Schedule.objects.get().last_task_id == task.task_id
    assert "waiting" in admin_client.get(url).content.decode()
