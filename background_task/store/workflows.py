"""Advancing workflows, inside the transactions that record their steps.

When a step's task is moved to the history (done, failed for good or
cancelled), :func:`steps_finished` runs in that same transaction: it settles
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
from django.db.models import Case, F, QuerySet, TextField, Value, When
from django.utils import timezone

from background_task.core import status
from background_task.core.serialization import loads_params
from background_task.store.hooks import StepEnded
from background_task.store.hooks import cancel_workflow as cancel_workflow_hook
from background_task.store.hooks import steps_finished as steps_finished_hook
from background_task.store.models import Task, Workflow, WorkflowNode, build_task
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
#: The columns of a node that deciding what follows reads.
NODE_FIELDS = ("id", "workflow_id", "parent_id", "kind", "role", "position", "status")
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


def _with_parents(using: str) -> QuerySet[WorkflowNode]:
    """Nodes with the columns that deciding what follows reads, and their parents'."""
    return (
        WorkflowNode.objects.using(using)
        .select_related("parent")
        .only(*NODE_FIELDS, *(f"parent__{name}" for name in NODE_FIELDS))
    )


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
    # The group's task members start together: one UPDATE, one bulk INSERT.
    WorkflowNode.objects.using(using).filter(
        parent=node, role=MEMBER, kind=TASK, status=PENDING
    ).update(status=STARTED)
    for member in members:
        if member.kind != TASK:
            start_node(member, given, has_input, plan)
        elif member.status == PENDING:  # (as read before the UPDATE)
            plan.tasks.append(_task_of(member, given, has_input, plan.now))
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


def steps_finished(rows: list[StepEnded], using: str, now: datetime) -> None:
    """Steps' tasks ended for good (their history rows are saved in the
    transaction this runs in: one, or a worker's batch of successes).
    Settle their nodes and queue what follows.

    A batch costs a few statements whatever its size. Members of groups that
    succeeded, the bulk of a fan-out, are read as tuples, settled in one
    UPDATE and counted down per group; the other nodes are loaded with their
    parents, settled in one UPDATE per outcome and followed one by one."""
    completed = {row.step_id: row for row in rows if row.status in OUTCOMES and row.step_id}
    found = list(
        WorkflowNode.objects.using(using)
        .filter(pk__in=list(completed), status=STARTED)
        .values_list("pk", "role", "parent_id", "parent__kind")
    )
    if not found:
        return
    plan = Plan(using, now)
    counted: dict[int, int] = {}  # group -> members of it that succeeded here
    members, others = [], []
    for pk, role, parent_id, parent_kind in found:
        if role == MEMBER and parent_kind == GROUP and completed[pk].status == status.DONE:
            counted[parent_id] = counted.get(parent_id, 0) + 1
            members.append(pk)
        else:
            others.append(pk)
    if members:
        _settle_pks(members, DONE, completed, plan)
    if others:
        nodes = list(_with_parents(using).filter(pk__in=others))
        for outcome in {OUTCOMES[completed[node.pk].status] for node in nodes}:
            _settle_all(
                [node for node in nodes if OUTCOMES[completed[node.pk].status] == outcome],
                outcome,
                completed,
                plan,
            )
        for node in nodes:
            _follow(node, node.status, plan, completed[node.pk])
    for group_pk, count in counted.items():
        _group_members_done(group_pk, count, plan)
    plan.apply()


def _settle_pks(pks: list[int], outcome: str, completed: dict[int, StepEnded], plan: Plan) -> None:
    """Settle the nodes ``pks`` with ``outcome`` and their tasks' results, in one UPDATE."""
    given = {pk: text for pk in pks if (text := completed[pk].result_json) is not None}
    value: Any = None
    if given:
        value = Case(
            *(When(pk=pk, then=Value(text)) for pk, text in given.items()),
            default=Value(None),
            output_field=TextField(),
        )
    WorkflowNode.objects.using(plan.using).filter(pk__in=pks, status=STARTED).update(
        status=outcome, result_json=value, finished_at=plan.now
    )


def _settle_all(
    nodes: list[WorkflowNode], outcome: str, completed: dict[int, StepEnded], plan: Plan
) -> None:
    """Settle ``nodes`` with ``outcome`` and their tasks' results, in one UPDATE."""
    _settle_pks([node.pk for node in nodes], outcome, completed, plan)
    for node in nodes:
        node.status, node.result_json = outcome, completed[node.pk].result_json


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
    error: StepEnded | None = None,
) -> None:
    if _settle(node, outcome, result_json, plan):
        _follow(node, outcome, plan, error)


def _follow(node: WorkflowNode, outcome: str, plan: Plan, error: StepEnded | None) -> None:
    """What ``node``'s outcome means for its parent (or, at the root, the workflow)."""
    parent = node.parent
    if parent is None:
        _finish_workflow(node, outcome, plan)
        return
    if node.role == ON_FAILURE:
        return  # its group had failed already
    if node.role == THEN:
        _settle_and_follow(parent, outcome, node.result_json, plan, error)
        return
    if parent.kind == CHAIN:
        _chain_member_ended(parent, node, outcome, plan, error)
    elif parent.kind == GROUP:
        _group_member_ended(parent, outcome, plan, error)


def _chain_member_ended(
    chain: WorkflowNode, member: WorkflowNode, outcome: str, plan: Plan, error: StepEnded | None
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


def _group_members_done(group_pk: int, count: int, plan: Plan) -> None:
    """``count`` members of group ``group_pk`` succeeded: count it down. The
    batch that takes it to 0 (one only: each UPDATE holds the row until its
    transaction ends) finishes the group; the others cost one UPDATE."""
    rows = WorkflowNode.objects.using(plan.using).filter(pk=group_pk, status=STARTED)
    if rows.filter(remaining__gt=count).update(remaining=F("remaining") - count):
        return
    if rows.filter(remaining=count).update(remaining=0):
        _group_succeeded(_with_parents(plan.using).get(pk=group_pk), plan)
    # else it failed or was cancelled meanwhile


def _group_member_ended(
    group: WorkflowNode, outcome: str, plan: Plan, error: StepEnded | None
) -> None:
    if outcome == DONE:
        _group_members_done(group.pk, 1, plan)
        return
    rows = WorkflowNode.objects.using(plan.using).filter(pk=group.pk, status=STARTED)
    if not rows.update(status=FAILED, finished_at=plan.now):
        return  # it had failed already: its on_failure was queued then
    group.status = FAILED
    for handler in _children(group, plan.using, ON_FAILURE):
        start_node(handler, json.dumps(_failure_of(error)), True, plan)
    WorkflowNode.objects.using(plan.using).filter(parent=group, role=THEN, status=PENDING).update(
        status=CANCELLED, finished_at=plan.now
    )
    _follow(group, FAILED, plan, error)


def _failure_of(task: StepEnded | None) -> dict[str, Any]:
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


steps_finished_hook.register(steps_finished)
cancel_workflow_hook.register(cancel_workflow)
