"""Workflows in Celery's spelling: steps (``task.s()``, ``task.si()``),
:func:`chain` and :func:`group`, started into rows of the queue's database.

``send.s(1)`` is a step that receives the previous step's result as its
first argument, ``send.si(1)`` one that ignores it; call options
(``queue``, ``priority``, ``timeout``, ``max_attempts``, ``ttl``...) go with
the arguments, as for a call. ``chain(a, b, c)`` runs its steps one after
the other; ``group(a, b, then=c, on_failure=d)`` runs its members at once,
then ``c`` with their results in order, or ``d`` if one failed for good.
Chains and groups nest. ``.start()`` stores the whole tree and queues its
first steps in one transaction (the caller's, inside ``transaction.atomic``)
and returns the :class:`~background_task.store.models.Workflow`, the handle.
What runs next is decided by :mod:`background_task.store.workflows`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.utils import timezone

from background_task.api.eager import eager, run_in_process
from background_task.core import status
from background_task.core.limits import call_key as limit_key
from background_task.core.options import ttl_seconds, validate_options
from background_task.core.rates import call_key as rate_key
from background_task.core.rates import stored as stored_rate
from background_task.core.retry import stored_policy
from background_task.core.serialization import dumps_params
from background_task.store.ids import new_task_id
from background_task.store.models import Task, Workflow, WorkflowNode
from background_task.store.models.workflow import (
    CHAIN,
    GROUP,
    MEMBER,
    ON_FAILURE,
    TASK,
    THEN,
)
from background_task.store.routing import queue_alias
from background_task.store.workflows import Plan, start_node

if TYPE_CHECKING:
    from background_task.api.proxy import TaskProxy

#: Call options a step takes, and the proxy attribute each defaults to.
STEP_OPTIONS = {
    "queue": "queue",
    "priority": None,
    "verbose_name": "verbose_name",
    "max_attempts": "max_attempts",
    "timeout": "timeout",
    "on_worker_lost": "on_worker_lost",
    "ttl": "ttl",
    "retry_delay": None,
}
NODE_BATCH = 1000  # workflow nodes per INSERT
EAGER_BATCH = 100  # steps looked up at a time in eager mode


@dataclass(frozen=True)
class Step:
    """One call of a task in a workflow (``task.s(...)`` or ``task.si(...)``)."""

    proxy: TaskProxy
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    takes_result: bool
    params: str  # the stored arguments (checked when the step is made)

    def set(self, **options: Any) -> Step:
        """The same step with other call options (``queue=``, ``priority=``...)."""
        unknown = sorted(set(options) - set(STEP_OPTIONS))
        if unknown:
            raise TypeError(
                f"Unknown step option(s) {', '.join(unknown)}; a step takes "
                f"{', '.join(STEP_OPTIONS)}."
            )
        return replace(self, options={**self.options, **options})

    def start(self, using: str | None = None) -> Workflow:
        """Start a workflow of this one step."""
        return chain(self).start(using=using)


@dataclass(frozen=True)
class Chain:
    """Steps (or nested chains and groups) run one after the other."""

    members: tuple[Node, ...]

    def start(self, using: str | None = None) -> Workflow:
        """Store the workflow and queue its first step; return its handle."""
        return _start(self, using)


@dataclass(frozen=True)
class Group:
    """Members run at once; ``then`` after all succeeded, ``on_failure`` if one failed."""

    members: tuple[Node, ...]
    then: Node | None = None
    on_failure: Node | None = None

    def start(self, using: str | None = None) -> Workflow:
        """Store the workflow and queue every member; return its handle."""
        return _start(self, using)


Node = Step | Chain | Group


def make_step(
    proxy: TaskProxy, args: tuple[Any, ...], kwargs: dict[str, Any], takes_result: bool
) -> Step:
    """The step of ``proxy`` called with ``args`` and ``kwargs`` (call options taken out)."""
    if proxy.unique is not None:
        raise TypeError(
            f"{proxy.name} is a unique task: a workflow step must run each time the "
            f"workflow reaches it, so unique tasks cannot be steps."
        )
    options = {key: kwargs.pop(key) for key in list(kwargs) if key in STEP_OPTIONS}
    params = dumps_params(args, kwargs, proxy.name)  # TypeError names a bad argument
    return Step(proxy, tuple(args), dict(kwargs), {}, takes_result, params).set(**options)


def _nodes(items: Iterable[Any], what: str) -> tuple[Node, ...]:
    found = tuple(items)
    for item in found:
        if not isinstance(item, Step | Chain | Group):
            raise TypeError(
                f"{what} takes steps (task.s(...), task.si(...)), chains and groups, "
                f"not {type(item).__name__} {item!r}; did you call the task instead of .s()?"
            )
    return found


def chain(*steps: Node) -> Chain:
    """Run ``steps`` one after the other, each ``.s()`` step receiving the
    previous one's result; the first that fails for good ends the chain."""
    members = _nodes(steps, "chain()")
    if not members:
        raise ValueError("chain() needs at least one step.")
    return Chain(members)


def group(*members: Node, then: Node | None = None, on_failure: Node | None = None) -> Group:
    """Run ``members`` at once; ``then`` once after all succeeded (a ``.s()``
    step receives their results in member order), ``on_failure`` once if any
    failed for good (receiving the failed step's task id and error)."""
    found = _nodes(members, "group()")
    _nodes([node for node in (then, on_failure) if node is not None], "group()")
    return Group(found, then, on_failure)


@dataclass
class _Builder:
    """Turns a tree of steps into WorkflowNode rows (inserted level by level)."""

    workflow: Workflow
    using: str

    def node(
        self, item: Node, parent: WorkflowNode | None, role: str, position: int
    ) -> WorkflowNode:
        row = WorkflowNode(workflow=self.workflow, parent=parent, role=role, position=position)
        if isinstance(item, Step):
            row.kind = TASK
            row.task_name = item.proxy.name
            row.task_params = item.params
            row.options = _stored_options(item)
            row.takes_result = item.takes_result
            row.task_id = new_task_id()
        else:
            row.kind = CHAIN if isinstance(item, Chain) else GROUP
        return row

    def _insert(self, rows: list[WorkflowNode]) -> None:
        """Insert ``rows``, learning their ids (their children need them)."""
        if connections[self.using].features.can_return_rows_from_bulk_insert:
            WorkflowNode.objects.using(self.using).bulk_create(rows, batch_size=NODE_BATCH)
            return
        for row in rows:  # MySQL returns no ids from a multi-row INSERT
            row.save(using=self.using, force_insert=True)

    def build(self, root: Node) -> WorkflowNode:
        level: list[tuple[Node, WorkflowNode | None, str, int]] = [(root, None, MEMBER, 0)]
        first: WorkflowNode | None = None
        while level:
            rows = [
                (item, self.node(item, parent, role, position))
                for item, parent, role, position in level
            ]
            self._insert([row for _, row in rows])
            if first is None:
                first = rows[0][1]
            level = []
            for item, row in rows:
                if isinstance(item, Chain | Group):
                    level += [
                        (child, row, MEMBER, index) for index, child in enumerate(item.members)
                    ]
                if isinstance(item, Group):
                    if item.then is not None:
                        level.append((item.then, row, THEN, 0))
                    if item.on_failure is not None:
                        level.append((item.on_failure, row, ON_FAILURE, 0))
        assert first is not None
        return first


def _stored_options(step: Step) -> dict[str, Any]:
    """A step's options as build_task takes them, with the decorator's defaults
    and its limits' keys."""
    proxy, given = step.proxy, step.options
    options: dict[str, Any] = {}
    for name, default in STEP_OPTIONS.items():
        value = given.get(name, getattr(proxy, default) if default else None)
        if value is not None:
            options[name] = value
    if "ttl" in options:
        options["result_ttl"] = ttl_seconds(options.pop("ttl"))
    if "retry_delay" in options:
        options["retry_delay"] = stored_policy(options["retry_delay"])
    if "priority" not in options:
        options["priority"] = proxy.schedule.priority or 0
    validate_options(
        queue=options.get("queue"),
        max_attempts=options.get("max_attempts"),
        timeout=options.get("timeout"),
        on_worker_lost=options.get("on_worker_lost"),
        verbose_name=options.get("verbose_name"),
    )
    if proxy.limit is not None:
        options["concurrency_limit"] = proxy.limit.limit
        options["concurrency_key"] = limit_key(
            proxy.name, proxy.limit.source, step.args, step.kwargs
        )
    if proxy.rate is not None:
        options["rate_limit"] = stored_rate(proxy.rate.rate)
        options["rate_key"] = rate_key(proxy.name, proxy.rate.source, step.args, step.kwargs)
    return options


def _start(root: Node, using: str | None) -> Workflow:
    alias = queue_alias(using)
    now = timezone.now()
    with transaction.atomic(using=alias):
        workflow = Workflow.objects.using(alias).create(created_at=now)
        top = _Builder(workflow, alias).build(root)
        plan = Plan(alias, now)
        start_node(top, None, False, plan)
        plan.apply()
    if eager():
        _run_eagerly(workflow, alias)
    return workflow


def _run_eagerly(workflow: Workflow, using: str) -> None:
    """Eager mode: run the workflow's steps here, each as it is queued, as a
    worker would; a step rescheduled after a failure waits, as in eager mode
    any task does."""
    steps = WorkflowNode.objects.using(using).filter(workflow=workflow).values("pk")
    while True:
        due = list(
            Task.objects.using(using)
            .filter(step_id__in=steps, status=status.WAITING, attempts=0)
            .order_by("id")[:EAGER_BATCH]
        )
        if not due:
            return
        for task in due:
            run_in_process(task)


def get_workflow(workflow_id: str, using: str | None = None) -> Workflow:
    """The workflow with this id; Workflow.DoesNotExist if there is none."""
    return Workflow.objects.using(queue_alias(using)).get(workflow_id=workflow_id)
