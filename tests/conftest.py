"""Shared fixtures: worker subprocesses and an injectable clock."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import django
import pytest
from django.db import connection
from django.utils import timezone as django_timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The SQLite pass of the main environment (Django 5.2) runs the checks that
# need the development tools (lint, types, docs, benchmarks) once per run.
MAIN_PASS = os.environ.get("DB_BACKEND", "sqlite") == "sqlite" and django.VERSION < (6, 0)


class Clock:
    """A clock the tests move by hand; it starts a second ahead of real time,
    so tasks the test queues "now" are already due."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or django_timezone.now() + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that uses the current test database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=ROOT,
        DB_NAME=str(connection.settings_dict["NAME"]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerProcess:
    """A real ``manage.py process_tasks`` child process."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, log_path: str | None = None
    ) -> None:
        """``log_path``: write the output to that file rather than a pipe (for
        long runs whose output could fill a pipe nobody reads until the end)."""
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "w") if log_path else None  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "process_tasks", *args],
            cwd=ROOT,
            env=env or subprocess_env(),
            stdout=self.log or subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # so kill() can reach the supervisor's children too
        )

    def _output(self, piped: str | None) -> str:
        if self.log is None or self.log_path is None:
            return piped or ""
        self.log.close()
        with open(self.log_path) as log:
            return log.read()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            output = self.kill()
            raise AssertionError(
                f"worker {self.args} did not exit in {timeout}s:\n{output}"
            ) from exc
        return self.process.returncode, self._output(output)

    def kill(self) -> str:
        """Kill the worker and anything it started (workers of a supervisor);
        return what it printed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            output, _ = self.process.communicate(timeout=10)
            return self._output(output)
        return ""


@pytest.fixture
def start_worker() -> Iterator[type[WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, **kwargs: object) -> WorkerProcess:
        worker = WorkerProcess(*args, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield start  # type: ignore[misc]
    for worker in started:
        worker.kill()


def drain(clock, **options: object) -> None:
    """Run every due task in this process, as a worker's loop would."""
    from background_task.runtime.worker import Worker

    worker = Worker(clock=clock, sleep=0.01, **options)  # type: ignore[arg-type]
    while worker.step():
        worker.settle()  # async tasks run on the worker's event loop
    worker.settle()


def wait_until(condition, timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
