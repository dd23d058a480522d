"""Admin for waiting/running tasks, the completed history, the live workers and
schedules, and a dashboard page (``admin/background_task/task/dashboard/``)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html

from background_task.api import queues
from background_task.core import status
from background_task.core.conf import app_settings
from background_task.core.progress import Progress
from background_task.runtime import scheduler
from background_task.store.models import (
    CompletedTask,
    PausedQueue,
    Schedule,
    Task,
    WorkerProcess,
    Workflow,
)
from background_task.web import dashboard
from background_task.web.workflow_chart import workflow_svg


def pretty_params(obj: Task | CompletedTask) -> str:
    try:
        return json.dumps(json.loads(obj.task_params), indent=2, sort_keys=True)
    except ValueError:
        return obj.task_params


def progress_html(progress: Progress | None) -> str:
    """A task's reported progress as a bar (when it has a total) and its text."""
    if progress is None:
        return "-"
    text = f"{progress.done:g}" + (f" / {progress.total:g}" if progress.total else "")
    if progress.message:
        text += f" \u2013 {progress.message}"
    if progress.percent is None:
        return format_html('<span class="bgtask-progress">{}</span>', text)
    return format_html(
        '<span class="bgtask-progress"><progress value="{}" max="100" title="{}%">{}%</progress> '
        "{}%<br>{}</span>",
        progress.percent,
        progress.percent,
        progress.percent,
        f"{progress.percent:g}",
        text,
    )


class HasErrorFilter(admin.SimpleListFilter):
    """Tasks that have failed at least once (waiting tasks) or for good (history)."""

    title = "failed"
    parameter_name = "failed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(last_error="")
        if self.value() == "no":
            return queryset.filter(last_error="")
        return queryset


class BaseTaskAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_filter = ["queue", "task_name", "status", HasErrorFilter]
    search_fields = ["task_name", "task_params", "task_id", "verbose_name"]
    list_display = [
        "task_name",
        "task_params",
        "run_at",
        "priority",
        "attempts",
        "status",
        "has_error",
        "locked_by",
        "progress_bar",
    ]
    readonly_fields = [
        "task_id",
        "task_name",
        "arguments",
        "task_hash",
        "status",
        "attempts",
        "last_error_display",
        "locked_by",
        "locked_at",
        "enqueued_at",
        "started_at",
        "last_attempted_at",
        "finished_at",
        "failed_at",
        "result",
        "errors",
        "worker_ids",
        "progress_bar",
        "meta_display",
    ]
    exclude = [
        "task_params",
        "last_error",
        "result_json",
        "progress_json",
        "meta_json",
        "headers",
        "step_id",
        "creator_content_type",
        "creator_object_id",
    ]
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over a large table on every page

    @admin.display(description="arguments")
    def arguments(self, obj: Task | CompletedTask) -> str:
        return format_html("<pre>{}</pre>", pretty_params(obj))

    @admin.display(description="progress")
    def progress_bar(self, obj: Task | CompletedTask) -> str:
        return progress_html(obj.progress)

    @admin.display(description="metadata")
    def meta_display(self, obj: Task | CompletedTask) -> str:
        meta = obj.meta
        if not meta:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(meta, indent=2, sort_keys=True))

    @admin.display(description="last error")
    def last_error_display(self, obj: Task | CompletedTask) -> str:
        return format_html("<pre>{}</pre>", obj.last_error or "-")


@admin.action(description="Run now", permissions=["change"])
def run_now(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    """Make the selected waiting tasks due at once (running ones are left alone)."""
    count = queryset.filter(status=status.WAITING).update(
        run_at=timezone.now(), locked_by=None, locked_at=None
    )
    modeladmin.message_user(request, f"{count} task(s) will run as soon as a worker is free.")


@admin.action(description="priority += 1", permissions=["change"])
def inc_priority(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    queryset.update(priority=F("priority") + 1)


@admin.action(description="priority -= 1", permissions=["change"])
def dec_priority(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    queryset.update(priority=F("priority") - 1)


def _queues_of(queryset: QuerySet[Task]) -> list[str | None]:
    names = {queue or None for queue in queryset.values_list("queue", flat=True).distinct()}
    return sorted(names, key=lambda name: name or "")


@admin.action(description="Pause the queues of the selected tasks", permissions=["change"])
def pause_queues(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    """Workers claim nothing from those queues until they are resumed."""
    names = _queues_of(queryset)
    for name in names:
        queues.pause_queue(name, reason=f"paused in the admin by {request.user}")
    listed = ", ".join(name or "<default>" for name in names)
    modeladmin.message_user(request, f"Paused: {listed}.", messages.SUCCESS)


@admin.action(description="Resume the queues of the selected tasks", permissions=["change"])
def resume_queues(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    names = [name for name in _queues_of(queryset) if queues.resume_queue(name)]
    listed = ", ".join(name or "<default>" for name in names) or "none was paused"
    modeladmin.message_user(request, f"Resumed: {listed}.", messages.SUCCESS)


@admin.register(Task)
class TaskAdmin(BaseTaskAdmin):
    list_display = [*BaseTaskAdmin.list_display, "locked_by_pid_running"]
    actions = [run_now, inc_priority, dec_priority, pause_queues, resume_queues]
    change_list_template = "admin/background_task/task/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name="background_task_dashboard",
        )
        return [dashboard, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Queue depth, throughput, per-task statistics, failures, workers, schedules."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        window = request.GET.get("window", dashboard.DEFAULT_WINDOW)
        if window not in dashboard.WINDOWS:
            window = dashboard.DEFAULT_WINDOW
        context = {
            **self.admin_site.each_context(request),
            "title": "Background tasks dashboard",
            "opts": self.model._meta,
            **dashboard.collect(timezone.now(), window),
        }
        return TemplateResponse(request, "admin/background_task/dashboard.html", context)


@admin.action(description="Retry failed tasks", permissions=["delete"])
def retry_failed(modeladmin: Any, request: HttpRequest, queryset: QuerySet[CompletedTask]) -> None:
    """Move the selected failed tasks back to the queue (needs add permission on Task)."""
    if not request.user.has_perm("background_task.add_task"):
        modeladmin.message_user(
            request, "You need permission to add tasks to retry them.", messages.ERROR
        )
        return
    failed = list(queryset.filter(failed_at__isnull=False))
    for completed in failed:
        completed.requeue()
    skipped = queryset.count()  # what is still selected had not failed
    note = f"; {skipped} selected task(s) had not failed and were left alone" if skipped else ""
    modeladmin.message_user(request, f"{len(failed)} task(s) queued again{note}.")


@admin.register(CompletedTask)
class CompletedTaskAdmin(BaseTaskAdmin):
    list_display = [*BaseTaskAdmin.list_display, "finished_at"]
    readonly_fields = [*BaseTaskAdmin.readonly_fields, "expires_at"]
    actions = [retry_failed]


@admin.register(WorkerProcess)
class WorkerProcessAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Live worker and supervisor processes, with the age of their last heartbeat.

    Read-only: rows are written by the processes themselves.
    """

    list_display = [
        "worker_id",
        "kind",
        "host",
        "pid",
        "queue_names",
        "concurrency",
        "heartbeat_age",
        "running_tasks",
        "started_at",
        "version",
    ]
    list_filter = ["kind", "host"]
    search_fields = ["worker_id", "host"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkerProcess]:
        held = Task.objects.filter(status=status.RUNNING, locked_by=OuterRef("worker_id"))
        count = held.order_by().values("locked_by").annotate(n=Count("pk")).values("n")
        rows: QuerySet[WorkerProcess] = super().get_queryset(request)
        return rows.annotate(running=Subquery(count[:1]))

    @admin.display(description="queues")
    def queue_names(self, obj: WorkerProcess) -> str:
        if obj.queues is None:
            return "all"
        return ", ".join(name or "<default>" for name in obj.queues)

    @admin.display(description="last heartbeat")
    def heartbeat_age(self, obj: WorkerProcess) -> str:
        seconds = (timezone.now() - obj.heartbeat_at).total_seconds()
        lost = seconds > app_settings.WORKER_LOST_AFTER
        label = f"{seconds:.0f}s ago"
        return (
            format_html('<span style="color: #ba2121">{} (lost)</span>', label) if lost else label
        )

    @admin.display(description="running")
    def running_tasks(self, obj: WorkerProcess) -> int:
        return getattr(obj, "running", None) or 0

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PausedQueue)
class PausedQueueAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Paused queues: adding one pauses it, deleting one resumes it (idle
    workers are woken); a queue's name is '' for the default queue."""

    list_display = ["__str__", "paused_at", "reason"]
    fields = ["queue", "reason"]
    actions = ["resume"]

    def save_model(self, request: HttpRequest, obj: PausedQueue, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["reason"])
            return
        obj.paused_at = timezone.now()
        obj.save()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["queue"] if obj is not None else []

    def delete_model(self, request: HttpRequest, obj: PausedQueue) -> None:
        queues.resume_queue(obj.name)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PausedQueue]) -> None:
        for row in queryset:
            queues.resume_queue(row.name)

    @admin.action(description="Resume the selected queues", permissions=["delete"])
    def resume(self, request: HttpRequest, queryset: QuerySet[PausedQueue]) -> None:
        rows = list(queryset)
        resumed = sum(queues.resume_queue(row.name) for row in rows)
        self.message_user(request, f"{resumed} queue(s) resumed.", messages.SUCCESS)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Schedules with their expression, next and last run and its outcome.

    Rows are synced from code and settings by the workers; here they can be
    enabled, disabled or run once now. The definition itself is changed in
    code (or settings), not here.
    """

    list_display = [
        "name",
        "task_name",
        "rule",
        "timezone",
        "next_run_at",
        "last_run_at",
        "last_outcome",
        "enabled",
        "defined",
    ]
    list_filter = ["enabled", "defined", "kind", "source"]
    search_fields = ["name", "task_name"]
    actions = ["enable", "disable", "run_now"]
    readonly_fields = [
        field.name for field in Schedule._meta.fields if field.name not in ("enabled",)
    ]

    @admin.display(description="expression")
    def rule(self, obj: Schedule) -> str:
        return str(scheduler.describe(obj)["expression"])

    @admin.display(description="last outcome")
    def last_outcome(self, obj: Schedule) -> str:
        return obj.last_outcome() or "-"

    @admin.action(description="Enable selected schedules")
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(request, f"{count} schedule(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable selected schedules")
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, f"{count} schedule(s) disabled.", messages.SUCCESS)

    @admin.action(description="Run selected schedules now (once, off their grid)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        from background_task.api.registry import autodiscover, tasks

        autodiscover()
        now = timezone.now()
        for schedule in queryset:
            task = scheduler.run_now(schedule, tasks, now)
            self.message_user(
                request, f"Queued {schedule.task_name} ({task.task_id}).", messages.SUCCESS
            )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.action(description="Cancel the selected workflows", permissions=["change"])
def cancel_workflows(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
    """Steps not started never run; waiting steps are cancelled, running ones asked to stop."""
    cancelled = sum(1 for workflow in queryset if workflow.cancel())
    modeladmin.message_user(request, f"{cancelled} workflow(s) cancelled.", messages.SUCCESS)


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Workflows, each with a drawing of its steps and their states."""

    list_display = ["workflow_id", "status", "created_at", "finished_at", "steps"]
    list_filter = ["status"]
    search_fields = ["workflow_id"]
    readonly_fields = [
        "workflow_id",
        "status",
        "created_at",
        "finished_at",
        "results",
        "steps_chart",
    ]
    exclude = ["result_json"]
    actions = [cancel_workflows]
    list_per_page = 50
    show_full_result_count = False

    @admin.display(description="steps")
    def steps(self, obj: Workflow) -> int:
        return obj.nodes.filter(kind="task").count()

    @admin.display(description="results")
    def results(self, obj: Workflow) -> str:
        if obj.result_json is None:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.results, indent=2, sort_keys=True))

    @admin.display(description="steps and their states")
    def steps_chart(self, obj: Workflow) -> str:
        nodes = obj.nodes.only(
            "id", "parent_id", "kind", "role", "position", "status", "task_name", "task_id"
        )
        return workflow_svg(list(nodes))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
