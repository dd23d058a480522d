"""Workflows under chaos: mixed chains and groups queued, then checked.

Four shapes, by index: a chain of two steps and a callback; a group of
three with a ``then``; a chain of a group and a callback; a group of a chain
and a step with a ``then``. Steps may run more than once (a worker killed
mid-step); each callback is atomic, so its record commits exactly once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from background_task import chain, group, status
from background_task.models import CompletedTask, Task, Workflow, WorkflowNode
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

QUEUE = "wf-chaos"
STEP_MILLIS = 15


def shape(index: int) -> tuple[Any, list[str]]:
    """Workflow ``index`` and the keys of the steps it must run."""
    callback = fixtures.wf_callback

    class step:  # each step takes 15 ms: the chaos needs time to happen
        @staticmethod
        def si(key: str) -> Any:
            return fixtures.wf_step.si(key, millis=STEP_MILLIS)

    a, b, c, cb = (f"{index}.{name}" for name in ("a", "b", "c", "cb"))
    kind = index % 4
    if kind == 0:
        return chain(step.si(a), step.si(b), callback.s(key=cb)), [a, b]
    if kind == 1:
        return group(step.si(a), step.si(b), step.si(c), then=callback.s(key=cb)), [a, b, c]
    if kind == 2:
        return chain(group(step.si(a), step.si(b)), callback.s(key=cb)), [a, b]
    return group(chain(step.si(a), step.si(b)), step.si(c), then=callback.s(key=cb)), [a, b, c]


def enqueue(count: int) -> None:
    for index in range(count):
        shape(index)[0].start()


def steps(count: int) -> int:
    """How many task steps ``count`` workflows have (each shape's steps and callback)."""
    return sum(len(shape(index)[1]) + 1 for index in range(count))


def done() -> int:
    """Steps done so far (a workflow is done in the transaction of its last step)."""
    return CompletedTask.objects.filter(queue=QUEUE, status=status.DONE).count()


def check(count: int) -> dict[str, int]:
    """Every workflow done, every step run, every callback exactly once, one
    task row per step; the figures, or AssertionError saying what is wrong."""
    states = Counter(Workflow.objects.values_list("status", flat=True))
    assert states == {"done": count}, f"workflows by state: {dict(states)}"
    assert not Task.objects.filter(queue=QUEUE).exists(), "steps are still queued"
    ran = Counter(Execution.objects.filter(task_name="wf_step").values_list("key", flat=True))
    called = Counter(
        Execution.objects.filter(task_name="wf_callback").values_list("key", flat=True)
    )
    missing = [key for index in range(count) for key in shape(index)[1] if key not in ran]
    assert not missing, f"steps that never ran: {missing[:20]}"
    wrong = {f"{index}.cb": called[f"{index}.cb"] for index in range(count)}
    wrong = {key: times for key, times in wrong.items() if times != 1}
    assert not wrong, f"callbacks not recorded exactly once: {dict(list(wrong.items())[:20])}"
    rows = Counter(CompletedTask.objects.filter(queue=QUEUE).values_list("step_id", flat=True))
    steps = WorkflowNode.objects.filter(kind="task").count()
    duplicated = {step: n for step, n in rows.items() if n != 1}
    assert not duplicated and len(rows) == steps, (
        f"{steps} steps, {len(rows)} with a history row, duplicated: {duplicated}"
    )
    assert not CompletedTask.objects.filter(queue=QUEUE).exclude(status=status.DONE).exists()
    return {
        "workflows": count,
        "steps": steps,
        "re-executions": sum(ran.values()) - len(ran),
        "callbacks": len(called),
    }
