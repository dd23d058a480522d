"""Instruments: code that watches tasks being queued and run (metrics, traces).

An :class:`Instrument` is told when tasks are queued and when each run
starts and ends, and may attach headers to a task being queued (a trace
context) and set up the context its code runs in (the current span). The
Prometheus and OpenTelemetry integrations are instruments; a project can
write its own. BACKGROUND_TASK_INSTRUMENTS chooses which are installed when
Django starts (by default those whose library is importable).

With none installed, the core path pays one check of an empty tuple per
event. An instrument that raises is logged and changes nothing: a task's
outcome never depends on its observers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

logger = logging.getLogger("background_task.instruments")

#: Undoes what :meth:`Instrument.entered` set up.
Leave = Callable[[], None]


class Instrument:
    """Watches tasks; override the methods you need (each does nothing here).

    ``task`` is the task's row (``task_id``, ``task_name``, ``queue``,
    ``headers``...). Methods run in the process and thread of the event:
    ``headers`` and ``queued`` where the task is queued, the others in the
    worker (``entered`` in the context that runs the task's code).
    """

    def headers(self, task: Any) -> Mapping[str, str] | None:
        """Headers to store on ``task`` as it is built to be queued (read
        back by its runs from ``task.headers``)."""
        return None

    def queued(self, tasks: Iterable[Any]) -> None:
        """``tasks`` were stored (one call, or one ``bulk()``)."""

    def started(self, task: Any, attempt: int) -> Any:
        """A run of ``task`` starts; the value returned is this run's state.
        :data:`SKIP` leaves this run alone: neither ``entered`` nor
        ``finished`` is called for it."""
        return None

    def entered(self, state: Any) -> Leave | None:
        """The task's code is about to run in this context; return what undoes
        what this set up (called when the code returned or raised)."""
        return None

    def finished(
        self,
        state: Any,
        task: Any,
        attempt: int,
        outcome: str,
        duration: float,
        error: BaseException | None,
    ) -> None:
        """The run ended: ``outcome`` is "done", "retry", "failed",
        "cancelled" or "lost"; ``duration`` in seconds."""


#: What :meth:`Instrument.started` returns to leave a run alone.
SKIP: Any = object()

#: The installed instruments (a tuple: empty is the fast, common case).
ACTIVE: tuple[Instrument, ...] = ()


def install(instrument: Instrument) -> Instrument:
    """Install ``instrument`` (once); returns it."""
    global ACTIVE
    if instrument not in ACTIVE:
        ACTIVE = (*ACTIVE, instrument)
    return instrument


def uninstall(instrument: Instrument) -> None:
    """Remove ``instrument`` if it is installed."""
    global ACTIVE
    ACTIVE = tuple(active for active in ACTIVE if active is not instrument)


def observe(task: Any, attempt: int) -> Observed | None:
    """Tell the installed instruments a run of ``task`` starts; None when
    none of them watches it."""
    states = []
    for instrument in ACTIVE:
        try:
            state = instrument.started(task, attempt)
        except Exception as exc:
            report(instrument, "started", exc)
            continue
        if state is not SKIP:
            states.append((instrument, state))
    return Observed(states) if states else None


def report(instrument: Instrument, event: str, exc: BaseException) -> None:
    """Log an instrument's failure (it changes nothing else)."""
    logger.warning(
        "Instrument %r failed in %s(): %r; the task is not affected.",
        instrument,
        event,
        exc,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def collect_headers(task: Any) -> dict[str, str] | None:
    """The headers the installed instruments attach to ``task``, being queued."""
    found: dict[str, str] = {}
    for instrument in ACTIVE:
        try:
            headers = instrument.headers(task)
        except Exception as exc:
            report(instrument, "headers", exc)
            continue
        if headers:
            found.update(headers)
    return found or None


def queued(tasks: Iterable[Any]) -> None:
    """Tell the installed instruments that ``tasks`` were stored."""
    rows = list(tasks)
    for instrument in ACTIVE:
        try:
            instrument.queued(rows)
        except Exception as exc:
            report(instrument, "queued", exc)


class Observed:
    """The installed instruments' states for one run (see :func:`observe`)."""

    __slots__ = ("states",)

    def __init__(self, states: list[tuple[Instrument, Any]]) -> None:
        self.states = states

    def enter(self) -> Leave:
        """Set up the context of the run's code; returns what undoes it."""
        leaves: list[Leave] = []
        for instrument, state in self.states:
            try:
                leave = instrument.entered(state)
            except Exception as exc:
                report(instrument, "entered", exc)
                continue
            if leave is not None:
                leaves.append(leave)

        def leave_all() -> None:
            for leave in reversed(leaves):
                try:
                    leave()
                except Exception as exc:
                    logger.warning("An instrument failed to leave a run's context: %r", exc)

        return leave_all

    def finish(
        self,
        task: Any,
        attempt: int,
        outcome: str,
        duration: float,
        error: BaseException | None,
    ) -> None:
        for instrument, state in self.states:
            try:
                instrument.finished(state, task, attempt, outcome, duration, error)
            except Exception as exc:
                report(instrument, "finished", exc)
