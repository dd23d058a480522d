"""Advancing workflows, inside the transactions that record their steps.

When a step's task is moved to the history (done, failed for good or
cancelled), :func:`step_finished` runs in that same transaction: it settles
the step's node and queues what comes next. A worker killed between the two
therefore never loses a step nor queues one twice. Every change of a node is
a compare-and-set UPDATE on its state (``STARTED`` to an outcome, a group's
``remaining`` counted down while it is above 0), so a group's ``then`` is
queued exactly once even when its last members finish at the same instant
on different workers.

- a chain queues its next member with the previous one's result when a
  member succeeded; when one failed for good, the chain fails and its later
  members are cancelled;
- a group queues every member at once (one bulk INSERT); when the last one
  succeeded it queues its ``then`` node with their results in member order
  (or, without one, succeeds with that list); when one failed for good it
  fails at once and queues its ``on_failure`` node;
- the root's outcome is the workflow's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from background_task.core import status
from background_task.core.serialization import loads_params
from background_task.store.hooks import cancel_workflow as cancel_workflow_hook
from background_task.store.hooks import step_finished as step_finished_hook
from background_task.store.models import CompletedTask, Task, Workflow, WorkflowNode, build_task
from background_task.store.models.workflow import (
    CANCELLED,
    CHAIN,
    DONE,
    FAILED,
    GROUP,
    MEMBER,
    ON_FAILURE,
    PENDING,
    STARTED,
    TASK,
    THEN,
)

BATCH = 500  # task rows per INSERT when a group starts
#: A task's final status -> its node's outcome.
OUTCOMES = {status.DONE: DONE, status.ERROR: FAILED, status.CANCELLED: CANCELLED}
#: The call options a step may carry, as build_task names them.
STEP_OPTIONS = (
    "queue",
    "priority",
    "verbose_name",
    "max_attempts",
    "timeout",
    "on_worker_lost",
    "result_ttl",
    "retry_delay",
)
#: Limits copied onto a step's task as they are (keys computed when the workflow was built).
LIMIT_COLUMNS = ("concurrency_key", "concurrency_limit", "rate_key", "rate_limit")


@dataclass
class Plan:
    """Task rows to insert and nodes to mark started, written together."""

    using: str
    now: datetime
    tasks: list[Task] = field(default_factory=list)

    def apply(self) -> None:
        if self.tasks:
            Task.objects.using(self.using).bulk_create(self.tasks, batch_size=BATCH)


def _children(node: WorkflowNode, using: str, role: str = MEMBER) -> list[WorkflowNode]:
    return list(
        WorkflowNode.objects.using(using).filter(parent=node, role=role).order_by("position")
    )


def _claim(node: WorkflowNode, using: str, **values: Any) -> bool:
    """Move a pending node to STARTED; False if it was not pending (cancelled)."""
    updated = (
        WorkflowNode.objects.using(using)
        .filter(pk=node.pk, status=PENDING)
        .update(status=STARTED, **values)
    )
    return bool(updated)


def start_node(node: WorkflowNode, given: str | None, has_input: bool, plan: Plan) -> bool:
    """Start ``node`` with the previous step's result (JSON text ``given``);
    False if it had been cancelled meanwhile."""
    using = plan.using
    if node.kind == TASK:
        if not _claim(node, using):
            return False
        plan.tasks.append(_task_of(node, given if has_input else None, has_input, plan.now))
        return True
    if node.kind == CHAIN:
        if not _claim(node, using):
            return False
        members = _children(node, using)
        if not members:
            _settle_and_follow(node, DONE, given, plan)
            return True
        return start_node(members[0], given, has_input, plan)
    members = _children(node, using)
    if not _claim(node, using, remaining=len(members)):
        return False
    if not members:
        _group_succeeded(node, plan)
    for member in members:
        start_node(member, given, has_input, plan)
    return True


def _task_of(node: WorkflowNode, given: str | None, has_input: bool, now: datetime) -> Task:
    assert node.task_name is not None and node.task_params is not None
    args, kwargs = loads_params(node.task_params)
    if node.takes_result and has_input:
        args = [json.loads(given) if given is not None else None, *args]
    options = node.options or {}
    task = build_task(
        node.task_name,
        args,
        kwargs,
        now=now,
        **{name: options[name] for name in STEP_OPTIONS if options.get(name) is not None},
    )
    for column in LIMIT_COLUMNS:
        if options.get(column) is not None:
            setattr(task, column, options[column])
    task.task_id = node.task_id or task.task_id
    task.step_id = node.pk
    return task


def step_finished(completed: CompletedTask, using: str, now: datetime) -> None:
    """A step's task ended for good: ``completed`` is its history row, saved in
    the transaction this runs in. Settle its node and queue what follows."""
    outcome = OUTCOMES.get(completed.status)
    node = WorkflowNode.objects.using(using).filter(pk=completed.step_id or 0).first()
    if outcome is None or node is None:
        return
    plan = Plan(using, now)
    _settle_and_follow(node, outcome, completed.result_json, plan, error=completed)
    plan.apply()


def _settle(node: WorkflowNode, outcome: str, result_json: str | None, plan: Plan) -> bool:
    updated = (
        WorkflowNode.objects.using(plan.using)
        .filter(pk=node.pk, status=STARTED)
        .update(status=outcome, result_json=result_json, finished_at=plan.now)
    )
    node.status, node.result_json = outcome, result_json
    return bool(updated)


def _settle_and_follow(
    node: WorkflowNode,
    outcome: str,
    result_json: str | None,
    plan: Plan,
    error: CompletedTask | None = None,
) -> None:
    if _settle(node, outcome, result_json, plan):
        _follow(node, outcome, plan, error)


def _follow(node: WorkflowNode, outcome: str, plan: Plan, error: CompletedTask | None) -> None:
    """What ``node``'s outcome means for its parent (or, at the root, the workflow)."""
    using = plan.using
    if node.parent_id is None:
        _finish_workflow(node, outcome, plan)
        return
    if node.role == ON_FAILURE:
        return  # its group had failed already
    parent = WorkflowNode.objects.using(using).get(pk=node.parent_id)
    if node.role == THEN:
        _settle_and_follow(parent, outcome, node.result_json, plan, error)
        return
    if parent.kind == CHAIN:
        _chain_member_ended(parent, node, outcome, plan, error)
    elif parent.kind == GROUP:
        _group_member_ended(parent, outcome, plan, error)


def _chain_member_ended(
    chain: WorkflowNode, member: WorkflowNode, outcome: str, plan: Plan, error: CompletedTask | None
) -> None:
    later = WorkflowNode.objects.using(plan.using).filter(
        parent=chain, role=MEMBER, position__gt=member.position
    )
    if outcome == DONE:
        following = later.order_by("position").first()
        if following is None:
            _settle_and_follow(chain, DONE, member.result_json, plan)
        elif not start_node(following, member.result_json, True, plan):
            _settle_and_follow(chain, CANCELLED, None, plan)
        return
    later.filter(status=PENDING).update(status=CANCELLED, finished_at=plan.now)
    _settle_and_follow(chain, outcome, None, plan, error)


def _group_member_ended(
    group: WorkflowNode, outcome: str, plan: Plan, error: CompletedTask | None
) -> None:
    rows = WorkflowNode.objects.using(plan.using).filter(pk=group.pk, status=STARTED)
    if outcome == DONE:
        # Count down; the member that takes it to 0 (one only: the UPDATE
        # holds the row until this transaction ends) finishes the group.
        if not rows.filter(remaining__gt=0).update(remaining=F("remaining") - 1):
            return
        left = (
            WorkflowNode.objects.using(plan.using)
            .values_list("remaining", flat=True)
            .get(pk=group.pk)
        )
        if left == 0:
            _group_succeeded(group, plan)
        return
    if not rows.update(status=FAILED, finished_at=plan.now):
        return  # it had failed already: its on_failure was queued then
    group.status = FAILED
    for handler in _children(group, plan.using, ON_FAILURE):
        start_node(handler, json.dumps(_failure_of(error)), True, plan)
    WorkflowNode.objects.using(plan.using).filter(parent=group, role=THEN, status=PENDING).update(
        status=CANCELLED, finished_at=plan.now
    )
    _follow(group, FAILED, plan, error)


def _failure_of(task: CompletedTask | None) -> dict[str, Any]:
    """What an ``on_failure`` step receives: the failed step's task and error."""
    if task is None:
        return {}
    errors = task.errors or []
    last = errors[-1] if errors else {}
    return {
        "task_id": task.task_id,
        "task_name": task.task_name,
        "exception": last.get("exception_class_path"),
        "message": last.get("message"),
    }


def _group_succeeded(group: WorkflowNode, plan: Plan) -> None:
    results = [
        None if text is None else json.loads(text)
        for text in WorkflowNode.objects.using(plan.using)
        .filter(parent=group, role=MEMBER)
        .order_by("position")
        .values_list("result_json", flat=True)
    ]
    encoded = json.dumps(results)
    then = _children(group, plan.using, THEN)
    if then:
        if not start_node(then[0], encoded, True, plan):
            _settle_and_follow(group, CANCELLED, None, plan)
        return
    _settle_and_follow(group, DONE, encoded, plan)


def _finish_workflow(root: WorkflowNode, outcome: str, plan: Plan) -> None:
    Workflow.objects.using(plan.using).filter(pk=root.workflow_id, status=STARTED).update(
        status=outcome,
        result_json=root.result_json if outcome == DONE else None,
        finished_at=plan.now,
    )
    if outcome != DONE:  # what never started never will
        WorkflowNode.objects.using(plan.using).filter(
            workflow_id=root.workflow_id, status=PENDING
        ).update(status=CANCELLED, finished_at=plan.now)


def cancel_workflow(workflow: Workflow) -> bool:
    """Cancel what has not finished: pending steps never start, waiting steps
    are cancelled, running ones are asked to stop. False if it had finished."""
    using = workflow._state.db or "default"
    with transaction.atomic(using=using):
        if (
            not Workflow.objects.using(using)
            .filter(pk=workflow.pk, status=STARTED)
            .update(status=CANCELLED, finished_at=timezone.now())
        ):
            return False
        nodes = WorkflowNode.objects.using(using).filter(workflow=workflow)
        nodes.filter(status=PENDING).update(status=CANCELLED, finished_at=timezone.now())
        running = list(nodes.filter(kind=TASK, status=STARTED).values_list("task_id", flat=True))
    for task in Task.objects.using(using).filter(task_id__in=running):
        task.cancel()
    workflow.refresh()
    return True


step_finished_hook.register(step_finished)
cancel_workflow_hook.register(cancel_workflow)
