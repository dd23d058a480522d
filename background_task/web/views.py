"""The JSON status endpoint: one task by id, and a filtered list.

Mount it with ``path("tasks/", include("background_task.web.urls"))``. Access
needs BACKGROUND_TASK_STATUS_PERMISSION (default: staff users); arguments,
results and tracebacks also need BACKGROUND_TASK_STATUS_DETAILS_PERMISSION
(default: staff users), checked per task.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from background_task.core import status
from background_task.core.conf import app_settings
from background_task.core.exceptions import TaskNotFound
from background_task.store import stats
from background_task.store.models import BaseTask, CompletedTask, Task, Workflow, find_task

MAX_LIST = 100  # rows a list request returns at most
MAX_STEPS = 1000  # steps a workflow's answer lists at most


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def describe_task(task: BaseTask, details: bool) -> dict[str, Any]:
    """The JSON form of a task; arguments, result and traceback only with ``details``."""
    error = task.error
    data: dict[str, Any] = {
        "task_id": task.task_id,
        "task_name": task.task_name,
        "queue": task.queue,
        "status": task.status,
        "ready": task.ready,
        "attempts": task.attempts,
        "max_attempts": task.effective_max_attempts(),
        "priority": task.priority,
        "enqueued_at": _iso(task.enqueued_at),
        "scheduled_at": _iso(
            task.scheduled_at or (task.run_at if isinstance(task, Task) else None)
        ),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
        "error": (
            {"exception": error["exception_class_path"], "message": error["message"]}
            if error
            else None
        ),
        "progress": progress.describe() if (progress := task.progress) is not None else None,
    }
    if details:
        data["meta"] = task.meta
        args, kwargs = _readable_params(task)
        data["args"], data["kwargs"] = args, kwargs
        data["result"] = task.result
        data["traceback"] = error["traceback"] if error else None
    return data


def _readable_params(task: BaseTask) -> tuple[Any, Any]:
    """The stored arguments as JSON data (tagged values as stored, models unfetched)."""
    import json

    try:
        args, kwargs = json.loads(task.task_params)
    except (TypeError, ValueError):
        return task.task_params, None
    return args, kwargs


def _denied(request: HttpRequest) -> JsonResponse | None:
    if app_settings.STATUS_PERMISSION(request):
        return None
    code = 401 if not request.user.is_authenticated else 403
    return JsonResponse({"error": "You may not see task status."}, status=code)


@require_GET
def task_status(request: HttpRequest, task_id: str) -> JsonResponse:
    """``GET <prefix>/<task_id>/``: one task, wherever it is now."""
    denied = _denied(request)
    if denied is not None:
        return denied
    try:
        task = find_task(task_id)
    except TaskNotFound:
        return JsonResponse({"error": f"No task with id {task_id!r}."}, status=404)
    details = bool(app_settings.STATUS_DETAILS_PERMISSION(request, task))
    return JsonResponse(describe_task(task, details))


@require_GET
def task_list(request: HttpRequest) -> JsonResponse:
    """``GET <prefix>/?queue=&status=&limit=``: the most recent tasks, newest first."""
    denied = _denied(request)
    if denied is not None:
        return denied
    wanted = request.GET.get("status")
    if wanted and wanted not in dict(status.CHOICES):
        return JsonResponse(
            {"error": f"Unknown status {wanted!r}; use one of {', '.join(dict(status.CHOICES))}."},
            status=400,
        )
    try:
        limit = min(max(int(request.GET.get("limit", 20)), 1), MAX_LIST)
    except ValueError:
        return JsonResponse({"error": "limit must be a whole number."}, status=400)
    rows: list[BaseTask] = []
    for model in (Task, CompletedTask):
        queryset = model.objects.all()
        if "queue" in request.GET:
            queryset = queryset.filter(queue=request.GET["queue"] or None)
        if wanted:
            queryset = queryset.filter(status=wanted)
        rows.extend(queryset.order_by("-id")[:limit])
    rows.sort(key=lambda task: task.enqueued_at or task.run_at, reverse=True)
    tasks = [
        describe_task(task, bool(app_settings.STATUS_DETAILS_PERMISSION(request, task)))
        for task in rows[:limit]
    ]
    return JsonResponse(
        {"tasks": tasks, "count": len(tasks), "paused_queues": stats.paused_queues()}
    )


def describe_workflow(workflow: Workflow, details: bool) -> dict[str, Any]:
    """The JSON form of a workflow and its steps; results only with ``details``."""
    steps = [
        {
            "step": node.pk,
            "parent": node.parent_id,
            "kind": node.kind,
            "role": node.role,
            "position": node.position,
            "status": node.status,
            "task_name": node.task_name,
            "task_id": node.task_id,
        }
        for node in workflow.nodes.order_by("id").only(
            "id", "parent_id", "kind", "role", "position", "status", "task_name", "task_id"
        )[:MAX_STEPS]
    ]
    data: dict[str, Any] = {
        "workflow_id": workflow.workflow_id,
        "status": workflow.status,
        "ready": workflow.ready,
        "created_at": _iso(workflow.created_at),
        "finished_at": _iso(workflow.finished_at),
        "steps": steps,
        "steps_truncated": len(steps) == MAX_STEPS,
    }
    if details:
        data["results"] = workflow.results
    return data


@require_GET
def workflow_status(request: HttpRequest, workflow_id: str) -> JsonResponse:
    """``GET <prefix>/workflows/<workflow_id>/``: a workflow and its steps."""
    denied = _denied(request)
    if denied is not None:
        return denied
    workflow = Workflow.objects.filter(workflow_id=workflow_id).first()
    if workflow is None:
        return JsonResponse({"error": f"No workflow with id {workflow_id!r}."}, status=404)
    details = bool(app_settings.STATUS_DETAILS_PERMISSION(request, workflow))
    return JsonResponse(describe_workflow(workflow, details))
