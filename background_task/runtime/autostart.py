"""An embedded worker that starts and stops with the web server.

With ``BACKGROUND_TASK_AUTOSTART`` set, a web server process (runserver,
gunicorn, uvicorn, daphne, hypercorn, waitress, uWSGI, mod_wsgi) starts
``process_tasks`` as a child process when Django is set up in it:

- **At most one per host.** Every server process of the same project
  (same settings module and database) competes for one file lock in the
  temporary directory; the one that wins starts the worker, and the worker
  inherits the lock, so it stays held until that worker and its children
  have exited. The other server processes try again every few seconds and
  take over when the holder goes away.
- **Restarted** ``restart_delay`` seconds after it dies.
- **Stopped with the server**: asked to stop (SIGTERM, the usual graceful
  shutdown) when the server process exits, and it stops itself within a
  second when the server process disappears without a word (SIGKILL).
- **Never** in other management commands (``migrate``, ``shell``, ``test``,
  ``process_tasks`` itself), in test runners, or in runserver's
  file-watching parent process.

Everything here is about processes; the worker itself is the ordinary
``process_tasks`` supervisor.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

from background_task.core.autostart_options import AutostartOptions
from background_task.store.routing import queue_alias

logger = logging.getLogger("background_task.autostart")

# Set in the embedded worker's environment: it must never start another one.
EMBEDDED_ENV = "BACKGROUND_TASK_EMBEDDED"
# Holds the lock's file descriptor number in the embedded worker's environment.
LOCK_FD_ENV = "BACKGROUND_TASK_EMBEDDED_LOCK_FD"
PARENT_CHECK_INTERVAL = 1.0  # seconds between the embedded worker's looks at its parent
STOP_WAIT = 5.0  # seconds the exiting server waits for the worker before leaving it to finish

# Modules that only a running server of that kind has imported.
SERVER_MODULES = (
    ("gunicorn.arbiter", "gunicorn"),
    ("uvicorn.server", "uvicorn"),
    ("daphne.server", "daphne"),
    ("hypercorn.run", "hypercorn"),
    ("waitress.server", "waitress"),
    ("uwsgi", "uWSGI"),
    ("mod_wsgi", "mod_wsgi"),
)


def serving_process(
    argv: Sequence[str], environ: Mapping[str, str], modules: Mapping[str, Any]
) -> str | None:
    """The web server this process is, or None if it is not one.

    runserver counts only in the process that serves (with the autoreloader,
    the child it restarts on code changes; never the watching parent).
    """
    if environ.get(EMBEDDED_ENV):
        return None
    if len(argv) > 1 and argv[1] == "runserver":
        if "--noreload" in argv or environ.get("RUN_MAIN") == "true":
            return "runserver"
        return None
    program = os.path.basename(argv[0]) if argv else ""
    package = os.path.basename(os.path.dirname(argv[0])) if argv else ""
    if program in ("manage.py", "django-admin", "pytest", "py.test") or (
        program == "__main__.py" and package in ("django", "pytest")
    ):
        return None  # a management command or a test run
    for module, server in SERVER_MODULES:
        if module in modules:
            return server
    return None


def lock_path(settings_module: str, database: Mapping[str, Any]) -> str:
    """The per-host lock file of one project (settings module and database)."""
    identity = json.dumps(
        [settings_module, str(database.get("ENGINE")), str(database.get("NAME")),
         str(database.get("HOST")), str(database.get("PORT"))]
    )  # fmt: skip
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"background_task-autostart-{digest}.lock")


class EmbeddedWorker:
    """Competes for the host lock and, once it has it, keeps a worker running."""

    def __init__(self, options: AutostartOptions, path: str, server: str) -> None:
        self.options = options
        self.path = path
        self.server = server
        self.owner_pid = os.getpid()
        self.process: subprocess.Popen[bytes] | None = None
        self.lock_file: IO[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name="background_task-autostart", daemon=True
        )

    def start(self) -> None:
        atexit.register(self.stop)
        self.thread.start()

    # -- the lock ------------------------------------------------------------

    def _try_lock(self) -> bool:
        import fcntl

        lock_file = open(self.path, "ab")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            return False
        self.lock_file = lock_file
        return True

    # -- the worker ----------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self.lock_file is not None
        fd = self.lock_file.fileno()
        env = dict(os.environ)
        env[EMBEDDED_ENV] = "1"
        env[LOCK_FD_ENV] = str(fd)
        # The worker imports the project as this process does.
        env["PYTHONPATH"] = os.pathsep.join(path or os.getcwd() for path in sys.path)
        env.pop("RUN_MAIN", None)
        command = [sys.executable, "-m", "background_task._embedded"]
        command += self.options.command_args()
        process = subprocess.Popen(
            command,
            env=env,
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the server's terminal stops the
            # server, which then stops the worker gracefully.
            start_new_session=True,
        )
        logger.info(
            "Started an embedded worker (pid %d) with %s in %s process %d.",
            process.pid,
            " ".join(self.options.command_args()),
            self.server,
            os.getpid(),
        )
        return process

    def _run(self) -> None:
        retry = max(self.options.restart_delay, 1.0)
        while not self.stopping.is_set():
            if self.lock_file is None and not self._try_lock():
                self.stopping.wait(retry)  # another process holds it; look again later
                continue
            try:
                self.process = self._spawn()
            except OSError:
                logger.exception("Could not start the embedded worker.")
                self.stopping.wait(retry)
                continue
            code = self.process.wait()
            if self.stopping.is_set():
                return
            logger.warning(
                "The embedded worker (pid %d) exited with code %s; restarting it in %g s.",
                self.process.pid,
                code,
                self.options.restart_delay,
            )
            self.stopping.wait(self.options.restart_delay)

    def stop(self) -> None:
        """Ask the worker to stop (the server is exiting); wait a little for it."""
        if os.getpid() != self.owner_pid:
            return  # a forked copy of the server process: the worker is not its own
        self.stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            logger.info("Stopping the embedded worker (pid %d).", process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_WAIT)  # it finishes its running tasks on its own after that
        if self.lock_file is not None:
            self.lock_file.close()
            self.lock_file = None


_started: EmbeddedWorker | None = None
_start_lock = threading.Lock()


def start(server: str = "wsgi") -> bool:
    """Start the embedded worker from this process if the setting asks for one.

    Called automatically when a known web server sets up Django; call it
    from your ``wsgi.py``/``asgi.py`` for another server. Returns whether
    this process now competes for the host's worker (once per process).
    """
    global _started
    from django.conf import settings

    from background_task.core.conf import app_settings

    options = app_settings.AUTOSTART
    if options is None or os.environ.get(EMBEDDED_ENV):
        return False
    if sys.platform == "win32":
        logger.warning("BACKGROUND_TASK_AUTOSTART needs a POSIX system; no worker started.")
        return False
    with _start_lock:
        if _started is not None and _started.owner_pid == os.getpid():
            return False
        path = lock_path(
            os.environ.get("DJANGO_SETTINGS_MODULE", ""), settings.DATABASES.get(queue_alias(), {})
        )
        _started = EmbeddedWorker(options, path, server)
        _started.start()
        return True


def start_if_serving() -> None:
    """The app's ``ready()`` hook: start only in a web server process."""
    from background_task.core.conf import is_set

    if not is_set("BACKGROUND_TASK_AUTOSTART"):
        return
    server = serving_process(sys.argv, os.environ, sys.modules)
    if server is not None:
        start(server)


def _forget_after_fork() -> None:
    # A forked server process (gunicorn with --preload) does not own the
    # worker its parent started; it may compete for the lock itself later.
    global _started
    _started = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
