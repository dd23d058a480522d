"""Running one claimed task and recording what happened.

Every write after the claim matches the claim token: a worker whose claim
expired and was taken over changes nothing and logs that it lost the claim.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.dispatch import Signal
from django.utils import timezone

from background_task.api.control import CurrentTask, reset_current, set_current
from background_task.api.registry import Tasks
from background_task.core import instruments, signals, status
from background_task.core.conf import FAIL, app_settings
from background_task.core.errors import error_record, format_traceback
from background_task.core.exceptions import (
    BadTaskRow,
    ClaimLost,
    InvalidTaskError,
    ResultNotSerializable,
    Retry,
    TaskCancelled,
    WorkerLost,
)
from background_task.core.instruments import Observed
from background_task.core.legacy_log import tasks_logger
from background_task.core.retry import Policy, load_policy, retries
from background_task.runtime.invocation import Invocation, Invocations
from background_task.runtime.jsonlog import run_fields
from background_task.runtime.reports import writer_for
from background_task.runtime.slots import TaskSlots
from background_task.store import limits, rates
from background_task.store.deleting import delete_claimed
from background_task.store.hooks import StepEnded, steps_finished
from background_task.store.inserting import insert_history
from background_task.store.models import CompletedTask, Task, TaskQuerySet
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.worker")
# 1.2.8 logged retries at WARNING on the models logger; its runner's messages
# go through tasks_logger() (background_task.tasks.logger).
models_logger = logging.getLogger("background_task.models")

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class _SomeClaimLost(Exception):
    """Rolls back a batch of successes in which a claim no longer holds."""


class WorkerStopped(BaseException):
    """Raised inside a running task when the worker must stop at once."""


#: Outcomes of a claimed task that did not start (a limit held it back).
NOT_STARTED = ("blocked", "deferred")


@dataclass
class Run:
    """One started attempt of a task, between :meth:`TaskExecutor.begin` and
    :meth:`TaskExecutor.conclude`."""

    task: Task
    started: float  # monotonic seconds
    token: str | None = None  # the claim token the attempt runs under
    holds_slot: bool = False  # it took a concurrency slot, to give back at the end
    invocation: Invocation | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None  # the attempt failed before its code could run
    slot: int | None = None  # its slot in the supervisor's view; None: the thread's own
    observed: Observed | None = None  # the installed instruments' states, if any

    @property
    def attempt(self) -> int:
        return self.task.attempts + 1


@dataclass(frozen=True)
class Handover:
    """A finished run's concurrency slot, kept for this thread's next run to
    give back with its own admission (see :meth:`TaskExecutor.execute`)."""

    task: Task
    token: str | None


@dataclass(frozen=True)
class Outcome:
    """What became of one run."""

    task: Task
    result: str  # "done", "retry", "failed", "lost"; or NOT_STARTED: "blocked", "deferred"
    duration: float  # seconds
    handover: Handover | None = None  # the slot it kept (``keep_slot``)


def send_robust(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send a signal; a receiver that raises is logged and changes nothing."""
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "Signal receiver %r raised %r; the task outcome is unchanged.",
                receiver,
                response,
                exc_info=(type(response), response, response.__traceback__),
            )


def encode_result(value: Any, task: Task | None = None, *, strict: bool = False) -> str | None:
    """The JSON text of a return value.

    Something JSON cannot hold fails the attempt for good when ``strict``
    (the task keeps its results: ``ttl`` was given); otherwise, as
    django-background-tasks 1.2.8 ignored return values, it is logged and
    not stored.
    """
    if value is None:
        return None
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        name = task.task_name if task is not None else "the task"
        if strict:
            raise ResultNotSerializable(
                f"{name} returned a {type(value).__name__}, which JSON cannot store ({exc}); "
                f"return JSON data (str, int, float, bool, None, lists, dicts) or None."
            ) from None
        logger.warning(
            "Return value of type %s of %s is not JSON serializable and was not stored.",
            type(value).__name__,
            name,
        )
        return None


class TaskExecutor:
    """Runs claimed tasks of one worker and records their outcomes."""

    def __init__(
        self,
        registry: Tasks,
        worker_id: str,
        *,
        using: str | None = None,
        clock: Callable[[], datetime] = timezone.now,
        retry_policy: Policy | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        slots: TaskSlots | None = None,
    ) -> None:
        using = queue_alias(using)
        self.registry = registry
        #: Where a supervised worker shows its supervisor what runs, and until when.
        self.slots = slots
        self.worker_id = worker_id
        self.using = using
        self.clock = clock
        #: Used for every task when given (tests); else :meth:`policy_for` decides.
        self.retry_policy = retry_policy
        self.should_stop = should_stop
        #: How each row's code is called (see :mod:`background_task.runtime.invocation`).
        self.invocations = Invocations(registry, worker_id)
        #: True while user code runs, so a forced stop may interrupt it.
        self.in_task_code = False
        #: Successes waiting for :meth:`flush`: (task, result JSON, finish time).
        self.pending: list[tuple[Task, str | None, datetime]] = []
        #: Wake a freed slot's blocked tasks at the next :meth:`flush`, with
        #: those of the other slots freed meanwhile (a worker's executor).
        self.batch_wakes = False
        #: The keys (and limits) of the slots given back since the last flush.
        self.wakes: dict[str, int] = {}
        self.wakes_since = 0.0  # monotonic seconds: when the first of them was
        # Pool threads add successes while the worker's thread flushes them.
        self._pending_lock = threading.Lock()

    @staticmethod
    def call_arguments(task: Task) -> tuple[list[Any], dict[str, Any]]:
        """The stored arguments."""
        try:
            return task.params()
        except ValueError as exc:
            raise BadTaskRow(f"Task {task.task_id} has unreadable arguments: {exc}") from exc

    def can_defer_successes(self) -> bool:
        """Successes may be recorded in batches only while no receiver could
        see the per-task signal order change (started, successful, finished)."""
        return not (
            signals.listened(signals.task_successful, Task)
            or signals.listened(signals.task_finished, Task)
        )

    def execute(
        self,
        task: Task,
        *,
        defer_success: bool = False,
        limited: bool = True,
        invocation: Invocation | None = None,
        handed: Handover | None = None,
        keep_slot: bool = False,
    ) -> Outcome:
        """Run a task this worker has claimed and record the outcome.

        With ``defer_success`` (and no receivers of the success signals), a
        success is queued for :meth:`flush`, which records many in one
        transaction; failures are always recorded at once.

        A task with a rate limit first takes a start of its rate; when none
        is left it waits for one (outcome ``"deferred"``: it did not start).
        A task with a concurrency limit then takes a slot of its key; when
        none is free it is blocked instead (outcome ``"blocked"``). When the
        run ends its slot is given back and the blocked tasks the slot can
        take are woken. ``limited=False`` (a run in the caller's process:
        eager mode, ``run_task``) takes neither.

        The run goes through :meth:`begin`, :meth:`call` and
        :meth:`conclude`; a worker's event loop uses the same steps around
        an ``async def`` task's coroutine (:meth:`coroutine`).

        ``keep_slot`` (the worker runs another limited task next, in this
        thread) keeps the run's concurrency slot when it ends: the outcome's
        ``handover`` is to be passed as ``handed`` to that next run, whose
        admission gives it back in the same transaction that takes its own
        (one commit for both), or to :meth:`free_handover`.
        """
        run = self.begin(task, limited=limited, invocation=invocation, handed=handed)
        if isinstance(run, Outcome):
            return run
        if run.invocation is not None and run.invocation.atomic and run.error is None:
            return self.execute_atomic(run, keep_slot=keep_slot)
        try:
            value = self.call(run)
        except WorkerStopped as stopped:
            self.conclude(run, error=stopped)
            raise
        except BaseException as exc:  # a task's failure never ends the worker
            return self.conclude(run, error=exc, defer_success=defer_success, keep_slot=keep_slot)
        return self.conclude(run, value=value, defer_success=defer_success, keep_slot=keep_slot)

    def execute_atomic(self, run: Run, *, keep_slot: bool = False) -> Outcome:
        """Run a started attempt of an ``atomic=True`` task inside the
        transaction that records its success.

        The code's writes to the queue's database and the move of the task to
        the history commit together: an exception, a lost claim (another
        worker took the task over) or a killed process rolls both back, and
        the failure is recorded on its own afterwards, as for any task.
        """
        recorded: str | None = None
        try:
            with transaction.atomic(using=self.using):
                value = self.call(run)
                recorded = self._record_value(run, value)
        except WorkerStopped as stopped:
            self.conclude(run, error=stopped)
            raise
        except ClaimLost as lost:
            logger.warning("%s The task's writes were rolled back.", lost)
            return self.conclude(run, error=lost, recorded="lost", keep_slot=keep_slot)
        except BaseException as exc:  # a task's failure never ends the worker
            return self.conclude(run, error=exc, keep_slot=keep_slot)
        return self.conclude(run, value=value, recorded=recorded, keep_slot=keep_slot)

    def _record_value(self, run: Run, value: Any) -> str:
        """Record a successful call's ``value`` now, in the caller's transaction."""
        invocation = run.invocation
        assert invocation is not None
        encoded = encode_result(
            invocation.normalize(value),
            run.task,
            strict=self.wants_result(run.task) or invocation.strict_result,
        )
        return self.record_success(run.task, encoded)

    def begin(
        self,
        task: Task,
        *,
        limited: bool = True,
        invocation: Invocation | None = None,
        handed: Handover | None = None,
    ) -> Run | Outcome:
        """Start an attempt of ``task``: pass its limits, log and signal the
        start, find its invocation and arguments.

        Returns the :class:`Run` to call and conclude or, when a limit held
        the task back, the not-started :class:`Outcome`. An attempt that
        cannot call its code (a bad row, an unknown name) is a run whose
        ``error`` is set: concluding it records that failure.
        """
        holds_slot = False
        if limited and (task.concurrency_limit is not None or task.rate_limit is not None):
            try:
                gate = self.persist(partial(self._admit, task, handed))
            except BaseException:
                if handed is not None:
                    self.free_handover(handed)
                raise
            if gate != "admitted":
                return Outcome(task, gate, 0.0)
            holds_slot = task.concurrency_limit is not None
        elif handed is not None:
            self.free_handover(handed)
        # The claim token is kept: recording a retry clears it on the object.
        run = Run(task, time.monotonic(), token=task.claim_token, holds_slot=holds_slot)
        logger.info(
            "Task %s (%s) started, attempt %d",
            task.task_id,
            task.task_name,
            run.attempt,
            extra=run_fields(task.task_id, task.task_name, task.queue, run.attempt),
        )
        tasks_logger().info("Running %s", task)
        if instruments.ACTIVE:
            run.observed = instruments.observe(task, run.attempt)
        send_robust(signals.task_started, Task)
        try:
            run.invocation = invocation or self.invocations.for_task(task)
            run.args, run.kwargs = self.call_arguments(task)
        except Exception as exc:
            run.error = exc
        return run

    def call(self, run: Run) -> Any:
        """Run a started attempt's code in this thread and return its value."""
        if run.error is not None:
            raise run.error
        assert run.invocation is not None
        task = run.task
        if self.slots is not None:
            self.slots.begin(task.pk, self.time_limit(task), time.monotonic())
        self.in_task_code = True
        current = set_current(CurrentTask(task, self.using, on_report=self.report))
        leave = run.observed.enter() if run.observed is not None else None
        try:
            return run.invocation.call(task, run.args, run.kwargs)
        finally:
            if leave is not None:
                leave()
            reset_current(current)
            self.in_task_code = False
            if self.slots is not None:
                self.slots.lift_deadline()

    def report(self, current: CurrentTask) -> None:
        """A running task reported progress or metadata: have it stored (throttled)."""
        writer_for(self.using).note(current, self.claimed)

    def coroutine(self, run: Run) -> Coroutine[Any, Any, Any]:
        """The coroutine of a started attempt of an ``async def`` task, for an
        event loop to await. Raises what creating it raised (arguments that
        do not fit the function, say), as :meth:`call` would."""
        if run.error is not None:
            raise run.error
        assert run.invocation is not None
        return run.invocation.acall(run.task, run.args, run.kwargs)

    def conclude(
        self,
        run: Run,
        *,
        value: Any = None,
        error: BaseException | None = None,
        defer_success: bool = False,
        keep_slot: bool = False,
        recorded: str | None = None,
    ) -> Outcome:
        """Record how a started attempt ended: its return ``value``, or ``error``.

        ``recorded`` is the outcome when the caller recorded it already (an
        atomic task's success, in the task's own transaction).

        Frees what the run held (its slot in the supervisor's view and its
        concurrency slot, unless ``keep_slot``: see :meth:`execute`) and
        sends ``task_finished``.
        """
        task, invocation = run.task, run.invocation
        attempt = run.attempt  # recording a retry counts the attempt on ``task``
        result = "failed"
        handover: Handover | None = None
        try:
            if recorded is not None:
                result = recorded
                if result == "done" and invocation is not None:
                    invocation.succeeded(invocation.normalize(value))
            elif error is None:
                assert invocation is not None
                try:
                    value = invocation.normalize(value)
                    encoded = encode_result(
                        value, task, strict=self.wants_result(task) or invocation.strict_result
                    )
                    if defer_success and invocation.deferrable and self.can_defer_successes():
                        with self._pending_lock:
                            self.pending.append((task, encoded, self.clock()))
                        result = "done"
                    else:
                        result = self.persist(partial(self.record_success, task, encoded))
                        if result == "done":
                            invocation.succeeded(value)
                except Exception as exc:
                    error = exc
            if error is not None and recorded is None:
                result = self._record_error(run, error)
        finally:
            if self.slots is not None:
                self.slots.end(run.slot)
            send_robust(signals.task_finished, Task)
            if run.holds_slot and keep_slot:
                handover = Handover(task, run.token)
            elif run.holds_slot:
                self.free_slot(task, run.token)
        duration = time.monotonic() - run.started
        if task.progress_json is not None or task.meta_json is not None:
            writer_for(self.using).ended(task.pk)  # its last report went with the outcome
        if run.observed is not None:
            run.observed.finish(task, attempt, result, duration, error)
        log = logger.warning if result in ("failed", "lost") else logger.info
        log(
            "Task %s (%s) queue=%s attempt=%d %s in %.3fs",
            task.task_id,
            task.task_name,
            task.queue or "-",
            attempt,
            result,
            duration,
            extra=run_fields(
                task.task_id,
                task.task_name,
                task.queue,
                attempt,
                outcome=result,
                duration=duration,
            ),
        )
        return Outcome(task, result, duration, handover)

    def _record_error(self, run: Run, error: BaseException) -> str:
        """Record a failed attempt and tell its invocation, inside an
        ``except`` block (Django's receivers read ``sys.exc_info()``)."""
        if isinstance(error, WorkerStopped):
            return self.persist(partial(self.record_failure, run.task, error))
        if sys.exc_info()[1] is error:
            return self._record_handled(run, error)
        traceback = error.__traceback__
        try:
            raise error
        except BaseException:
            error.__traceback__ = traceback  # the task's frames only, not this one
            return self._record_handled(run, error)

    def _record_handled(self, run: Run, error: BaseException) -> str:
        result = self.persist(partial(self.record_failure, run.task, error))
        if run.invocation is not None and result != "lost":
            run.invocation.failed(error, final=result in ("failed", "cancelled"))
        return result

    def _admit(self, task: Task, handed: Handover | None = None) -> str:
        """Return "admitted", or why the task did not start: "deferred" (its
        rate allows no start now) or "blocked" (no free slot of its key).

        A slot ``handed`` over by this thread's previous run is given back
        in the same transaction."""
        if handed is None:
            return self._admit_now(task)
        with transaction.atomic(using=self.using):
            self.free_slot(handed.task, handed.token)
            return self._admit_now(task)

    def _admit_now(self, task: Task) -> str:
        if not rates.take(task, self.using):
            return "deferred"
        if not limits.acquire(task, self.using):
            return "blocked"
        return "admitted"

    def free_handover(self, handed: Handover) -> None:
        """Give back a slot kept by :meth:`execute` with ``keep_slot``."""
        self.free_slot(handed.task, handed.token)

    def free_slot(self, task: Task, token: str | None) -> None:
        """Give back the concurrency slot of ``task``'s run under ``token``
        (nothing for a task without a limit); a failure leaves it to the sweep.

        With ``batch_wakes``, the blocked tasks of its key are woken by the
        next :meth:`flush` (with those of the other slots given back since)
        rather than by a read of their own now."""
        if task.concurrency_limit is None:
            return
        try:
            limits.release(task, token, self.using, wake=not self.batch_wakes)
        except DatabaseError as exc:
            logger.warning("Could not free the slot of task %s: %s", task.task_id, exc)
            return
        if self.batch_wakes and task.concurrency_key is not None:
            with self._pending_lock:
                if not self.wakes:
                    self.wakes_since = time.monotonic()
                self.wakes[task.concurrency_key] = task.concurrency_limit

    @staticmethod
    def wants_result(task: Task) -> bool:
        """True when the task keeps its return value (it set ``ttl``)."""
        return task.result_ttl is not None

    @staticmethod
    def time_limit(task: Task) -> float | None:
        """Seconds a run of ``task`` may take before its process is killed, or None."""
        return task.timeout or app_settings.DEFAULT_TIMEOUT

    def persist(self, write: Callable[[], str]) -> str:
        """Run a write, retrying through database outages until it lands.

        Gives up only when the worker is stopping; the claim then expires and
        the task runs again (at least once, never lost).
        """
        delay = 0.5  # seconds
        while True:
            try:
                return write()
            except ClaimLost as exc:
                logger.warning("%s", exc)
                return "lost"
            except TRANSIENT_DB_ERRORS as exc:
                if self.should_stop():
                    logger.error("Could not record a task outcome while stopping: %s", exc)
                    return "lost"
                logger.warning(
                    "Database unavailable while recording an outcome (%s); retrying in %.1fs",
                    exc,
                    delay,
                )
                close_connection(self.using)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def flush(self) -> None:
        """Record the deferred successes, in one transaction when all claims
        hold; then wake the tasks blocked on the slots given back since the
        last flush (``batch_wakes``)."""
        self._flush_successes()
        if self.wakes:
            with self._pending_lock:
                keys, self.wakes = self.wakes, {}
            try:
                self.persist(partial(self._wake_keys, keys))
            except DatabaseError as exc:  # the maintenance sweep wakes them
                logger.warning("Could not wake blocked tasks (%s); the sweep will.", exc)

    def _wake_keys(self, keys: dict[str, int]) -> str:
        woken = limits.wake_keys(keys, self.using)
        return f"{woken} woken"

    def _flush_successes(self) -> None:
        if not self.pending:
            return
        with self._pending_lock:
            pending, self.pending = self.pending, []
        try:
            self.persist(partial(self._record_successes, pending))
        except (_SomeClaimLost, DatabaseError):
            # Rolled back: record them one by one, each fenced on its own.
            for task, result, finished in pending:
                try:
                    self.persist(partial(self.record_success, task, result, finished))
                except DatabaseError:
                    # Never let one bad write stop the worker; the claim
                    # expires and the task runs again.
                    logger.exception("Could not record the success of task %s.", task.task_id)

    def _record_successes(self, pending: list[tuple[Task, str | None, datetime]]) -> str:
        by_token: dict[str | None, list[int]] = {}
        for task, _, _ in pending:
            by_token.setdefault(task.claim_token, []).append(task.pk)
        with transaction.atomic(using=self.using):
            # Delete first: on SQLite a transaction that reads before it
            # writes can fail to take the write lock under contention.
            for token, ids in by_token.items():
                if token is None:
                    raise _SomeClaimLost  # recorded one by one, each fenced on its own
                if delete_claimed(self.using, token, ids) != len(ids):
                    raise _SomeClaimLost
            insert_history(
                [
                    self._completed_values(task, finished, status=status.DONE, result_json=result)
                    for task, result, finished in pending
                ],
                using=self.using,
            )
            steps = [
                StepEnded(
                    task.step_id, status.DONE, result, task.task_id, task.task_name, task.errors
                )
                for task, result, finished in pending
                if task.step_id is not None
            ]
            if steps:  # workflows' steps: queue what follows
                steps_finished.get()(steps, self.using, pending[-1][2])
            repetitions = [
                repetition
                for task, _, finished in pending
                if (repetition := task.next_repetition(finished)) is not None
            ]
            if repetitions:
                Task.objects.using(self.using).bulk_create(repetitions)
        for task, _, _ in pending:
            tasks_logger().info("Ran task and deleting %s", task)
        return "done"

    def claimed(self, task: Task) -> TaskQuerySet:
        """The row of ``task`` if the claim this worker holds is still its claim.

        Every write after a claim goes through here. A lock taken by 1.2.8
        has no token and is matched on its holder and time instead. A task
        object that holds nothing (released, or already settled) matches
        nothing, never the unclaimed row.
        """
        rows: TaskQuerySet = Task.objects.using(self.using).filter(pk=task.pk)
        if task.claim_token is not None:
            return rows.filter(claim_token=task.claim_token)
        if task.locked_by is None or task.locked_at is None:
            return rows.none()
        return rows.filter(
            claim_token=None,
            status=status.RUNNING,
            locked_by=task.locked_by,
            locked_at=task.locked_at,
        )

    def _completed(self, task: Task, now: datetime, **values: Any) -> CompletedTask:
        """The history row of a finished attempt by this worker."""
        return CompletedTask(**self._completed_values(task, now, **values))

    def _completed_values(self, task: Task, now: datetime, **values: Any) -> dict[str, Any]:
        values.setdefault("worker_ids", [*(task.worker_ids or []), self.worker_id])
        return task.completed_values(
            now, attempts=task.attempts + 1, expires_at=task.expiry(now), **values
        )

    def _delete_claimed(self, task: Task) -> None:
        deleted, _ = self.claimed(task).delete()
        if not deleted:
            raise ClaimLost(
                f"Lost the claim on task {task.task_id} ({task.task_name}); another worker "
                f"took it over, so this run's outcome is discarded."
            )

    def _finish(self, task: Task, now: datetime, **values: Any) -> CompletedTask:
        """Move the task to the completed table and queue its next repetition."""
        completed = self._completed(task, now, **values)
        with transaction.atomic(using=self.using):
            self._delete_claimed(task)
            completed.save(using=self.using, force_insert=True)
            if task.step_id is not None:  # a workflow's step: queue what follows
                steps_finished.get()([StepEnded.of(completed)], self.using, now)
            repetition = task.next_repetition(now)
            if repetition is not None:
                repetition.save(using=self.using, force_insert=True)
        return completed

    def record_success(
        self, task: Task, result: str | None, finished: datetime | None = None
    ) -> str:
        completed = self._finish(
            task, finished or self.clock(), status=status.DONE, result_json=result
        )
        tasks_logger().info("Ran task and deleting %s", task)
        send_robust(signals.task_successful, Task, task_id=task.pk, completed_task=completed)
        return "done"

    def fail_permanently(self, task: Task, exc: BaseException) -> str:
        """Record a failure that is not retried, whatever attempts remain."""
        return self.record_failure(task, exc, permanent=True)

    def record_lost(self, task: Task, exc: BaseException) -> str:
        """Count the attempt of a worker that died holding ``task``, as the task chose:
        queue it again with backoff (``"retry"``) or fail it for good (``"fail"``)."""
        return self.record_failure(
            task, exc, permanent=task.worker_lost_policy() == FAIL, worker_id=task.locked_by
        )

    def record_failure(
        self,
        task: Task,
        exc: BaseException,
        *,
        permanent: bool = False,
        worker_id: str | None = None,
    ) -> str:
        """Count a failed attempt: reschedule with backoff, or fail for good.

        ``worker_id`` names the worker that made the attempt when it is not
        this one (a lost worker whose task is recovered).
        """
        now = self.clock()
        attempts = task.attempts + 1
        worker_id = worker_id or self.worker_id
        trace = format_traceback(exc)
        error = error_record(exc, attempts, now, worker_id, trace)
        if isinstance(exc, TaskCancelled) or self._cancel_requested(task):
            return self._record_cancelled(task, now, trace, worker_id)
        tasks_logger().error("Rescheduling %s", task, exc_info=(type(exc), exc, exc.__traceback__))
        send_robust(signals.task_error, type(exc), task=task)
        errors = [*(task.errors or []), error]
        permanent = permanent or isinstance(exc, InvalidTaskError) or not self.retryable(task, exc)
        next_run = (
            None
            if permanent
            else self.policy_for(task).next_run(attempts, task.effective_max_attempts(), now)
        )
        if next_run is not None and isinstance(exc, Retry) and exc.delay is not None:
            next_run = now + timedelta(seconds=exc.delay)
        if next_run is None:
            completed = self._finish(
                task,
                now,
                status=status.ERROR,
                failed_at=now,
                last_error=trace,
                errors=errors,
                worker_ids=[*(task.worker_ids or []), worker_id],
            )
            models_logger.warning("Marking task %s as failed", task)
            send_robust(signals.task_failed, Task, task_id=task.pk, completed_task=completed)
            return "failed"
        updated = self.claimed(task).update(
            attempts=attempts,
            last_error=trace,
            errors=errors,
            worker_ids=[*(task.worker_ids or []), worker_id],
            run_at=next_run,
            status=status.WAITING,
            progress_json=task.progress_json,
            meta_json=task.meta_json,
            locked_by=None,
            locked_at=None,
            claim_token=None,
        )
        if not updated:
            raise ClaimLost(
                f"Lost the claim on task {task.task_id} ({task.task_name}) before its failure "
                f"could be recorded; another worker took it over."
            )
        task.attempts, task.run_at, task.last_error = attempts, next_run, trace
        task.locked_by = task.locked_at = task.claim_token = None
        models_logger.warning(
            "Rescheduling task %s for %s later at %s", task, next_run - now, next_run
        )
        send_robust(signals.task_rescheduled, Task, task=task)
        return "retry"

    def policy_for(self, task: Task) -> Policy:
        """The retry policy of ``task``: the call's ``retry_delay``, else the
        decorator's, else BACKGROUND_TASK_RETRY_POLICY, else 1.2.8's backoff."""
        if self.retry_policy is not None:
            return self.retry_policy
        if task.retry_delay:
            return load_policy(task.retry_delay)
        proxy = self.registry.find(task.task_name)
        if proxy is not None and proxy.retry_policy is not None:
            return proxy.retry_policy
        return app_settings.RETRY_POLICY

    def retryable(self, task: Task, exc: BaseException) -> bool:
        """Whether the task's ``retry_on`` / ``dont_retry_on`` let ``exc`` be
        retried. A ``Retry`` the task raised always may; a lost worker's task
        follows its ``on_worker_lost`` instead."""
        if isinstance(exc, Retry | WorkerLost):
            return True
        proxy = self.registry.find(task.task_name)
        return proxy is None or retries(exc, proxy.retry_on, proxy.dont_retry_on)

    def _cancel_requested(self, task: Task) -> bool:
        requested: bool = (
            Task.objects.using(self.using).filter(pk=task.pk, cancel_requested=True).exists()
        )
        return requested

    def _record_cancelled(
        self, task: Task, now: datetime, trace: str, worker_id: str | None = None
    ) -> str:
        """End a run that stopped because it was cancelled: history, no retry."""
        self._finish(
            task,
            now,
            status=status.CANCELLED,
            last_error=trace,
            worker_ids=[*(task.worker_ids or []), worker_id or self.worker_id],
        )
        logger.info("Task %s (%s) stopped: it was cancelled.", task.task_id, task.task_name)
        return "cancelled"

    def record_cancelled(self, task: Task, reason: str) -> str:
        """Record a run cut short by ``cancel(force=True)`` (its process was killed)."""
        return self._record_cancelled(task, self.clock(), reason, task.locked_by)

    def release(self, task: Task) -> bool:
        """Put a claimed task that never started back in the queue at once."""
        return bool(self.claimed(task).update(**task.unstarted_values()))


def close_connection(using: str) -> None:
    """Drop a connection that failed so the next query opens a fresh one."""
    from django.db import connections

    with contextlib.suppress(DatabaseError):
        connections[using].close()
