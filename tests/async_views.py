"""Async views of the test project: the awaitable API under a real ASGI server."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

import background_task
from tests.testapp import tasks as fixtures


async def enqueue(request: HttpRequest) -> JsonResponse:
    """Queue ``add(a, b)`` due now, and read it back by id."""
    task = await fixtures.add.aenqueue(int(request.GET["a"]), int(request.GET["b"]), schedule=0)
    handle = await background_task.aget_result(task.task_id)
    return JsonResponse({"task_id": handle.task_id, "status": handle.status})


async def result(request: HttpRequest, task_id: str) -> JsonResponse:
    """Wait (without blocking the server) for a task to finish; its result."""
    handle = await background_task.aget_result(task_id)
    await handle.wait_async(timeout=float(request.GET.get("timeout", "10")))
    return JsonResponse({"status": handle.status, "result": handle.result})


async def cancel(request: HttpRequest, task_id: str) -> JsonResponse:
    """Cancel a waiting task."""
    handle = await background_task.aget_result(task_id)
    return JsonResponse({"cancelled": await handle.acancel(), "status": handle.status})
