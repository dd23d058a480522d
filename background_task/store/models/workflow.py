"""Workflows: chains and groups of tasks whose order lives in the database.

A :class:`Workflow` is a tree of :class:`WorkflowNode` rows: a ``task``
node is one call of a task (queued as a ``Task`` row whose ``step_id`` names
the node), a ``chain`` node runs its children one after the other, a
``group`` node all at once, then its ``then`` node (or, if a member failed
for good, its ``on_failure`` node). What each node's state is, and which
node comes next, is decided by :mod:`background_task.store.workflows` inside
the transaction that records each step's outcome.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.db import models

from background_task.core.options import TASK_ID_MAX_LENGTH, TASK_NAME_MAX_LENGTH
from background_task.store.hooks import cancel_workflow
from background_task.store.ids import new_task_id
from background_task.store.models.routed import QueueManager
from background_task.store.models.task import CompletedTask, Task

# Node kinds and roles.
TASK, CHAIN, GROUP = "task", "chain", "group"
MEMBER, THEN, ON_FAILURE = "member", "then", "on_failure"
# States of nodes and workflows.
PENDING, STARTED, DONE, FAILED, CANCELLED = "pending", "started", "done", "failed", "cancelled"
SETTLED = (DONE, FAILED, CANCELLED)


class Workflow(models.Model):
    """One started chain or group, and its handle: ``status``, ``results``,
    ``tasks()``, ``wait()``, ``cancel()``."""

    workflow_id = models.CharField(
        max_length=TASK_ID_MAX_LENGTH, unique=True, default=new_task_id, editable=False
    )
    status = models.CharField(max_length=16, default=STARTED)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    result_json = models.TextField(null=True, blank=True)

    objects = QueueManager()

    class Meta:
        db_table = "background_task_workflow"
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "finished_at"], name="bgtask_workflow_state")]

    def __str__(self) -> str:
        return f"workflow {self.workflow_id} ({self.status})"

    @property
    def ready(self) -> bool:
        """True once the workflow has finished: done, failed or cancelled."""
        return self.status in SETTLED

    @property
    def results(self) -> Any:
        """What the workflow returned: a chain its last step's value, a group
        its members' values in order (or its ``then`` step's value); None
        before it is done."""
        return None if self.result_json is None else json.loads(self.result_json)

    def refresh(self) -> Workflow:
        """Reload the state; returns the workflow."""
        self.refresh_from_db(fields=["status", "finished_at", "result_json"])
        return self

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> Workflow:
        """Block until the workflow has finished; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().ready:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Workflow {self.workflow_id} did not finish within {timeout}s "
                    f"(status {self.status!r})."
                )
            time.sleep(interval)
        return self

    def cancel(self) -> bool:
        """Cancel the workflow: steps not started never run, waiting steps are
        cancelled, running ones are asked to stop (``current_task().cancel_requested``).
        False, and nothing changes, if it had finished."""
        cancelled: bool = cancel_workflow.get()(self)
        return cancelled

    def tasks(self) -> list[Any]:
        """The handles of the steps queued so far (``Task`` or ``CompletedTask``),
        in the order the steps were given."""
        ids = [
            node.task_id
            for node in self.nodes.filter(kind=TASK).exclude(status=PENDING).order_by("id")
            if node.task_id
        ]
        found: dict[str, Any] = {}
        for model in (Task, CompletedTask):
            for row in model.objects.using(self._state.db).filter(task_id__in=ids):
                found[row.task_id] = row
        return [found[task_id] for task_id in ids if task_id in found]


class WorkflowNode(models.Model):
    """One node of a workflow's tree (see the module docstring)."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="nodes")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    kind = models.CharField(max_length=8)
    role = models.CharField(max_length=12, default=MEMBER)
    position = models.IntegerField(default=0)
    # A task node's call: the task, its stored arguments and call options.
    task_name = models.CharField(max_length=TASK_NAME_MAX_LENGTH, null=True, blank=True)
    task_params = models.TextField(null=True, blank=True)
    options = models.JSONField(default=dict, blank=True)
    takes_result = models.BooleanField(default=False)  # ``.s()``: the previous result first
    task_id = models.CharField(max_length=TASK_ID_MAX_LENGTH, null=True, blank=True)
    status = models.CharField(max_length=16, default=PENDING)
    remaining = models.IntegerField(default=0)  # a group's members not yet done
    result_json = models.TextField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = QueueManager()

    class Meta:
        db_table = "background_task_workflownode"
        indexes = [models.Index(fields=["parent", "role", "position"], name="bgtask_node_sibling")]

    def __str__(self) -> str:
        what = self.task_name if self.kind == TASK else self.kind
        return f"{what} ({self.status})"
