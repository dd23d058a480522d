"""The admin dashboard: once-a-minute samples, statistics, charts and the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from background_task import status
from background_task.models import CompletedTask, QueueSample, Task
from background_task.store import metrics
from background_task.templatetags.bgtask_format import duration, percent
from background_task.web import dashboard
from background_task.web.charts import Series, _nice_ceiling, line_chart
from tests.testapp import tasks as fixtures

URL = "admin:background_task_dashboard"
T0 = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def finished(name: str, at: datetime, seconds: float = 0.5, failed: bool = False, **fields):
    return CompletedTask.objects.create(
        task_name=name,
        task_params="[[], {}]",
        task_hash="h",
        run_at=at,
        started_at=at - timedelta(seconds=seconds),
        finished_at=at,
        status=status.ERROR if failed else status.DONE,
        failed_at=at if failed else None,
        last_error="Traceback (most recent call last):\n  boom <b>" if failed else "",
        **fields,
    )


# -- pure pieces -----------------------------------------------------------------


def test_task_statistics() -> None:
    at = T0
    runs = [
        ("a", status.DONE, at, at + timedelta(seconds=s)) for s in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    ]
    runs += [("b", status.ERROR, at, at + timedelta(seconds=2)), ("b", status.DONE, None, None)]
    a, b = dashboard.task_statistics(runs)
    assert (a.name, a.runs, a.failures, a.mean_seconds, a.p95_seconds) == ("a", 10, 0, 5.5, 10)
    assert (b.name, b.runs, b.failures, b.failure_rate) == ("b", 2, 1, 0.5)
    assert b.mean_seconds == b.p95_seconds == 2  # the run without times has no duration
    assert dashboard.percentile([1, 2, 3, 4], 0.5) == 2
    assert dashboard.percentile([7], 0.95) == 7


def sample(minute: datetime, **counts: int) -> QueueSample:
    return QueueSample(minute=minute, **counts)


def test_merge_samples_keeps_rates_per_minute_and_peak_depths() -> None:
    samples = [sample(T0 + timedelta(minutes=i), finished=i, due=10 * i) for i in range(10)]
    points, per_point = dashboard.merge_samples(samples, max_points=5)
    assert per_point == 2 and len(points) == 5
    assert points[0].finished == 0.5 and points[0].due == 10
    assert points[-1].minute == T0 + timedelta(minutes=8)
    assert points[-1].finished == 8.5 and points[-1].due == 90
    assert dashboard.merge_samples([], 5) == ([], 1)
    unchanged, one = dashboard.merge_samples(samples[:3], max_points=240)
    assert one == 1 and [p.finished for p in unchanged] == [0, 1, 2]


def test_line_chart_draws_lines_breaks_gaps_and_escapes() -> None:
    times = [T0 + timedelta(minutes=i) for i in (0, 1, 2, 10, 11)]
    svg = line_chart(
        times,
        [Series("<done>", "#417690", [1, 2, 3, 4, 5]), Series("b", "red", [0, None, 0, 0, 0])],
        title="A & B",
        gap=timedelta(minutes=2),
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "A &amp; B" in svg and "&lt;done&gt;" in svg and "<done>" not in svg
    # "a": one line before the gap and one after; "b": broken at None and at the gap.
    assert svg.count("<polyline") == 3
    assert svg.count("<circle") == 2  # b alone at minutes 0 and 2
    assert ">5<" in svg  # the axis maximum
    empty = line_chart([], [Series("x", "red", [])], title="Nothing")
    assert "No samples yet" in empty and "<polyline" not in empty


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (0.3, 0.5), (1, 1), (7, 10), (12, 20), (1234, 2000), (2400, 2500)],
)
def test_axis_maximum_is_a_round_number(value: float, ceiling: float) -> None:
    assert _nice_ceiling(value) == ceiling


def test_format_filters() -> None:
    assert percent(0.0123) == "1.2 %" and percent(None) == "-"
    assert duration(0.00085) == "850 µs"
    assert duration(0.0123) == "12.3 ms"
    assert duration(4.561) == "4.56 s"
    assert duration(200) == "3 min 20 s"
    assert duration(7300) == "2 h 1 min"
    assert duration(None) == "-"


# -- samples ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_sample_a_minute_counts_depth_and_the_minute_before() -> None:
    now = T0  # 12:00:30
    due = [fixtures.record("a"), fixtures.record("b"), fixtures.noop()]
    Task.objects.filter(pk__in=[t.pk for t in due]).update(run_at=now - timedelta(seconds=1))
    later = fixtures.noop()
    Task.objects.filter(pk=later.pk).update(run_at=now + timedelta(hours=1))
    running = Task.objects.get(pk=due[2].pk)
    running.lock("w")
    finished("a", now - timedelta(seconds=40), queue="records")  # 11:59:50, counted
    finished("a", now - timedelta(seconds=50), failed=True)  # 11:59:40, counted
    finished("a", now - timedelta(seconds=100))  # 11:58:50, the minute before: not counted
    finished("a", now - timedelta(seconds=10))  # 12:00:20, this minute: next sample's

    assert metrics.take_sample(now)
    assert not metrics.take_sample(now + timedelta(seconds=20))  # same minute: written once
    row = QueueSample.objects.get()
    assert row.minute == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert (row.finished, row.failed, row.running) == (2, 1, 1)
    assert row.queues["records"]["finished"] == 1 and row.queues["<default>"]["failed"] == 1
    assert (row.waiting, row.due) == (3, 2)
    assert row.queues["records"]["due"] == 2

    assert metrics.take_sample(now + timedelta(minutes=1))
    assert QueueSample.objects.count() == 2


@pytest.mark.django_db
def test_samples_older_than_a_week_are_pruned() -> None:
    QueueSample.objects.create(minute=T0 - timedelta(days=8))
    QueueSample.objects.create(minute=T0 - timedelta(days=6))
    metrics.take_sample(T0)
    assert QueueSample.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_records_samples(start_worker) -> None:
    fixtures.noop()
    code, output = start_worker("--burst").wait()
    assert code == 0, output
    assert QueueSample.objects.count() == 1


# -- the page --------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


@pytest.mark.django_db
def test_dashboard_shows_statistics_failures_workers_and_charts(admin_client) -> None:
    now = timezone.now()
    for i in range(4):
        finished("app.tasks.mail", now - timedelta(minutes=i + 1), seconds=0.2)
    finished("app.tasks.report", now - timedelta(minutes=3), seconds=3, failed=True)
    finished("app.tasks.old", now - timedelta(days=2))  # outside the default 24 h
    for i in range(5):
        QueueSample.objects.create(
            minute=metrics.minute_of(now) - timedelta(minutes=4 - i),
            finished=10 + i,
            due=7,
            waiting=9,
            queues={"mail": {"waiting": 9, "due": 7, "running": 0, "finished": 10, "failed": 0}},
        )
    response = admin_client.get(reverse(URL))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Tasks finished per minute" in page and "Queue depth" in page
    assert page.count("<polyline") >= 2
    stats = {entry.name: entry for entry in response.context["task_stats"]}
    assert set(stats) == {"app.tasks.mail", "app.tasks.report"}
    assert stats["app.tasks.mail"].runs == 4 and stats["app.tasks.report"].failure_rate == 1
    assert "200.0 ms" in page and "100.0 %" in page
    assert "boom &lt;b&gt;" in page  # the traceback, escaped
    assert response.context["depth"]["live"] is False and response.context["depth"]["due"] == 7
    assert "No worker is running" in page

    week = admin_client.get(reverse(URL) + "?window=7d")
    assert {e.name for e in week.context["task_stats"]} >= {"app.tasks.old"}
    assert admin_client.get(reverse(URL) + "?window=bogus").context["window"] == "24h"


@pytest.mark.django_db
def test_without_samples_the_depth_is_counted_live(admin_client) -> None:
    fixtures.record("a")
    response = admin_client.get(reverse(URL))
    assert response.context["depth"]["live"] is True
    assert response.context["depth"]["waiting"] == 1
    assert "No samples yet" in response.content.decode()


@pytest.mark.django_db
def test_statistics_look_at_a_bounded_number_of_runs(admin_client, monkeypatch) -> None:
    monkeypatch.setattr(dashboard, "STATS_ROWS", 5)
    now = timezone.now()
    for i in range(8):
        finished("t", now - timedelta(seconds=i + 1))
    response = admin_client.get(reverse(URL))
    assert response.context["runs_looked_at"] == 5 and response.context["runs_capped"]
    assert "latest 5 finished runs" in response.content.decode()


@pytest.mark.django_db
def test_query_count_does_not_grow_with_the_data(admin_client, django_assert_max_num_queries):
    now = timezone.now()
    metrics.take_sample(now)
    for i in range(30):
        finished(f"t{i % 3}", now - timedelta(seconds=i + 1), failed=i % 5 == 0)
    with django_assert_max_num_queries(12):
        assert admin_client.get(reverse(URL)).status_code == 200


@pytest.mark.django_db
def test_who_may_see_it(client) -> None:
    url = reverse(URL)
    assert client.get(url).status_code == 302  # to the admin login
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_task"))
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_the_task_list_links_to_it(admin_client) -> None:
    page = admin_client.get(reverse("admin:background_task_task_changelist")).content.decode()
    assert reverse(URL) in page
