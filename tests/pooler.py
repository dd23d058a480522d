"""A real PgBouncer in transaction pooling mode, started by the tests.

Debian's ``pgbouncer`` package (.ci/run installs it). PgBouncer refuses to
run as root, so as root it runs as the ``postgres`` user. Every database
name maps to the local PostgreSQL server, so the suite's test database is
reachable through it under the same name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

CONFIG = """\
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""


def executable() -> str | None:
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer",) if os.path.exists(path)), None
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgBouncer:
    """``start()``, ``stop()`` and ``restart()`` a PgBouncer on ``port``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="bgtask-pgbouncer-")
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        os.chmod(self.directory, 0o755)
        with open(os.path.join(self.directory, "users.txt"), "w") as users:
            users.write('"postgres" ""\n')
        self.config = os.path.join(self.directory, "pgbouncer.ini")
        with open(self.config, "w") as config:
            config.write(CONFIG.format(port=self.port, directory=self.directory))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        found = executable()
        assert found, "pgbouncer is not installed"
        self.process = subprocess.Popen(
            [found, self.config],
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"PgBouncer did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: close every connection now
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "pgbouncer.log")) as log:
                return log.read()
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
