"""BACKGROUND_TASK_AUTOSTART: the worker that starts and stops with the web server.

The process tests run real servers (runserver, gunicorn) against the test
database and watch the embedded supervisor through the worker table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from background_task.checks import check_settings
from background_task.core.autostart_options import AutostartOptions, parse_options
from background_task.core.conf import app_settings
from background_task.models import CompletedTask, WorkerProcess
from background_task.runtime import autostart
from background_task.runtime.autostart import lock_path, serving_process
from tests.chaos import dead
from tests.conftest import ROOT, subprocess_env, wait_until
from tests.scratch_servers import free_port
from tests.testapp import tasks as testtasks

# -- the setting -------------------------------------------------------------


def test_off_by_default_and_true_means_defaults() -> None:
    assert app_settings.AUTOSTART is None
    assert parse_options(False) is None
    assert parse_options(True) == AutostartOptions()


def test_options_become_process_tasks_arguments() -> None:
    options = parse_options(
        {"workers": 2, "threads": 4, "async_concurrency": 50, "queues": ["mail", "default"],
         "sleep": 0.5, "restart_delay": 1, "log_file": "/tmp/worker.log"}
    )  # fmt: skip
    assert options is not None
    assert options.command_args() == [
        "--workers", "2", "--threads", "4", "--async-concurrency", "50", "--sleep", "0.5",
        "--queues", "mail,default", "--log-file", "/tmp/worker.log",
    ]  # fmt: skip
    assert options.restart_delay == 1.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", "must be True, False or a dict of options"),
        ({"worker": 2}, "unknown option(s) 'worker'"),
        ({"workers": 0}, "option 'workers' must be a positive integer, not 0"),
        ({"threads": True}, "option 'threads' must be a positive integer, not True"),
        ({"async_concurrency": 0}, "option 'async_concurrency' must be a positive integer, not 0"),
        ({"sleep": -1}, "option 'sleep' must be a number >= 0, not -1"),
        ({"queues": "mail"}, "option 'queues' must be a list of queue names, not 'mail'"),
        ({"queues": ["a,b"]}, "non-empty list of queue names"),
        ({"log_file": 3}, "option 'log_file' must be a path, not 3"),
    ],
)
def test_bad_setting_is_named(value: object, message: str) -> None:
    with override_settings(BACKGROUND_TASK_AUTOSTART=value):
        errors = [e for e in check_settings() if e.id == "background_task.E019"]
        assert len(errors) == 1
        assert errors[0].msg.startswith("BACKGROUND_TASK_AUTOSTART ")
        assert message in errors[0].msg
        with pytest.raises(ImproperlyConfigured, match="BACKGROUND_TASK_AUTOSTART"):
            _ = app_settings.AUTOSTART


# -- which processes start it --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "modules", "server"),
    [
        (["manage.py", "runserver", "--noreload"], {}, {}, "runserver"),
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, {}, "runserver"),
        (["manage.py", "runserver"], {}, {}, None),  # the autoreloader's watching parent
        (["/venv/bin/gunicorn", "proj.wsgi"], {}, {"gunicorn.arbiter": 1}, "gunicorn"),
        (["/venv/bin/uvicorn", "proj.asgi:app"], {}, {"uvicorn.server": 1}, "uvicorn"),
        (["/venv/bin/daphne", "proj.asgi:app"], {}, {"daphne.server": 1}, "daphne"),
        (["httpd"], {}, {"mod_wsgi": 1}, "mod_wsgi"),
        (["manage.py", "migrate"], {}, {}, None),
        (["manage.py", "shell"], {}, {}, None),
        (["manage.py", "test"], {}, {}, None),
        (["manage.py", "process_tasks"], {}, {}, None),
        (["/x/django/__main__.py", "process_tasks"], {}, {}, None),
        # python -m gunicorn, from a virtualenv whose name mentions django
        (["/venv-django/gunicorn/__main__.py"], {}, {"gunicorn.arbiter": 1}, "gunicorn"),
        (["/venv/bin/pytest"], {}, {}, None),
        # A management command in a process that happens to import a server.
        (["manage.py", "shell"], {}, {"gunicorn.arbiter": 1}, None),
        # The embedded worker itself, whatever it looks like.
        (["manage.py", "runserver", "--noreload"], {autostart.EMBEDDED_ENV: "1"}, {}, None),
    ],
)
def test_serving_process(
    argv: list[str], environ: dict[str, str], modules: dict[str, object], server: str | None
) -> None:
    assert serving_process(argv, environ, modules) == server


def test_lock_is_per_project_and_database() -> None:
    pg = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "db", "PORT": 5432}
    assert lock_path("shop.settings", pg) == lock_path("shop.settings", dict(pg))
    assert lock_path("shop.settings", pg) != lock_path("blog.settings", pg)
    assert lock_path("shop.settings", pg) != lock_path("shop.settings", {**pg, "NAME": "shop2"})


def test_not_started_in_the_test_process() -> None:
    assert autostart._started is None


# -- real servers --------------------------------------------------------------

AUTOSTART = {"restart_delay": 0.3, "sleep": 0.2}


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Server:
    """A web server child process in its own session, output kept in a file."""

    def __init__(self, command: list[str], tmp_path, **settings: object) -> None:
        self.port = free_port()
        self.log_path = tmp_path / "server.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        env = subprocess_env(BGTASK_AUTOSTART=json.dumps({**AUTOSTART, **settings}))
        self.process = subprocess.Popen(
            [arg.replace("{port}", str(self.port)) for arg in command],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # As in a terminal: a test run started in the background (by a
            # non-interactive shell's "&") inherits SIGINT ignored.
            preexec_fn=default_sigint,
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def signal_group(self, signum: int) -> None:
        """As a Ctrl-C in its terminal does: every process of the server's group."""
        os.killpg(self.process.pid, signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            processes = subprocess.run(
                ["ps", "-eo", "pid,ppid,pgid,stat,etime,args", "--forest"],
                capture_output=True,
                text=True,
            ).stdout
            mine = [line for line in processes.splitlines() if "python" in line or "PID" in line]
            raise AssertionError(
                f"the server did not exit:\n{self.output()}\nprocesses:\n" + "\n".join(mine)
            ) from None

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def servers(tmp_path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()
    # Nothing the servers started may outlive the test.
    for row in WorkerProcess.objects.all():
        with contextlib.suppress(ProcessLookupError):
            os.kill(row.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    return not dead(pid)  # a zombie (exited, not yet reaped) no longer runs anything


def supervisors() -> list[WorkerProcess]:
    """The live supervisors (a killed one leaves its row behind)."""
    rows = WorkerProcess.objects.filter(kind=WorkerProcess.SUPERVISOR)
    return [row for row in rows if alive(row.pid)]


def run_a_task(key: str, timeout: float = 30) -> None:
    testtasks.record(key)
    wait_until(lambda: CompletedTask.objects.filter(task_params__contains=key).exists(), timeout)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the embedded worker needs POSIX")


@pytest.mark.django_db(transaction=True)
def test_runserver_starts_restarts_and_stops_its_worker(tmp_path, servers) -> None:
    # With the autoreloader: the watching parent must not start a worker too.
    server = Server(
        [sys.executable, "-m", "django", "runserver", "127.0.0.1:{port}"], tmp_path, workers=1
    )
    servers.append(server)
    wait_until(lambda: len(supervisors()) == 1, 60)
    run_a_task("runserver-1")
    time.sleep(1.0)
    assert len(supervisors()) == 1, server.output()
    first = supervisors()[0]
    # The serving process (runserver's reloader child) is the worker's parent.
    serving = parent_of(first.pid)
    assert serving != server.process.pid

    os.kill(first.pid, signal.SIGKILL)  # it dies: restarted after restart_delay
    wait_until(lambda: [s.pid for s in supervisors()] not in ([], [first.pid]), 30)
    [second] = [s for s in supervisors() if s.pid != first.pid]
    assert parent_of(second.pid) == serving
    run_a_task("runserver-2")

    server.signal_group(signal.SIGINT)  # Ctrl-C
    server.wait()
    wait_until(lambda: not alive(second.pid), 15)
    # It unregistered, as after any clean stop.
    assert not WorkerProcess.objects.filter(pid=second.pid).exists()


@pytest.mark.django_db(transaction=True)
def test_management_commands_never_start_it(tmp_path) -> None:
    env = subprocess_env(BGTASK_AUTOSTART=json.dumps(AUTOSTART))
    code = (
        "import time; from background_task.runtime import autostart; time.sleep(1.5); "
        "print('started', autostart._started)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "started None" in result.stdout
    assert not supervisors()


def gunicorn_missing() -> str | None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return "gunicorn is not installed (requirements/test.txt installs it)"
    return None


@pytest.mark.django_db(transaction=True)
def test_gunicorn_runs_one_worker_per_host_and_hands_it_over(tmp_path, servers) -> None:
    if gunicorn_missing():
        if os.environ.get("CI"):
            pytest.fail(gunicorn_missing())
        pytest.skip(gunicorn_missing())
    server = Server(
        [sys.executable, "-m", "gunicorn", "--workers", "3", "--bind", "127.0.0.1:{port}",
         "--graceful-timeout", "10", "tests.wsgi:application"],
        tmp_path,
    )  # fmt: skip
    servers.append(server)
    wait_until(lambda: len(supervisors()) == 1, 60)
    run_a_task("gunicorn-1")
    time.sleep(1.5)  # every server process has had its chance at the lock
    [first] = supervisors()
    assert len(supervisors()) == 1, server.output()
    holder = parent_of(first.pid)
    assert parent_of(holder) == server.process.pid  # started by a gunicorn worker

    # The gunicorn worker holding it is killed: the embedded worker notices
    # its parent is gone, stops, and another server process takes over.
    os.kill(holder, signal.SIGKILL)
    wait_until(lambda: not alive(first.pid), 15)
    wait_until(lambda: [s.pid for s in supervisors()] not in ([], [first.pid]), 30)
    time.sleep(1.5)
    [second] = supervisors()
    assert parent_of(parent_of(second.pid)) == server.process.pid
    run_a_task("gunicorn-2")

    server.process.send_signal(signal.SIGTERM)  # gunicorn's graceful shutdown
    server.wait()
    wait_until(lambda: not alive(second.pid), 15)
    assert not WorkerProcess.objects.filter(pid=second.pid).exists()
