"""Database servers a test starts, crashes and restarts on its own.

The chaos suite's restart scenario must not touch the shared servers the
rest of the suite uses, so it runs a private PostgreSQL (``initdb`` +
``pg_ctl``) or MariaDB (``mariadb-install-db`` + ``mariadbd``) in a temporary
directory on a free port, with a database named ``chaos`` migrated in it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime

DATABASE = "chaos"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ScratchServer:
    """A private server: ``start()``, ``restart()`` (abrupt), ``close()``."""

    backend = ""
    system_user = ""

    def __init__(self) -> None:
        # Not under pytest's tmp dir: the server's system user must reach it.
        self.root = pathlib.Path(tempfile.mkdtemp(prefix=f"bgtask-{self.backend}-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # the servers refuse to run as root
            shutil.chown(self.root, self.system_user)
            os.chmod(self.root, 0o755)
            self.as_user = ["runuser", "-u", self.system_user, "--"]

    @classmethod
    def missing(cls) -> str | None:
        """Why this server cannot run here, or None."""
        raise NotImplementedError

    def call(self, *command: str) -> None:
        result = subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"

    def env(self) -> dict[str, str]:
        """Environment variables that point the test settings at this server."""
        return {"DB_BACKEND": self.backend, "DB_NAME": DATABASE, "DB_PORT": str(self.port)}

    def restart(self, down_for: float = 2.0) -> tuple[datetime, datetime]:
        """Crash the server, keep it down ``down_for`` seconds, start it again;
        return when it went down and when it was back."""
        down = datetime.now(UTC)
        self.crash()
        time.sleep(down_for)
        self.boot()
        return down, datetime.now(UTC)

    def start(self) -> None:
        self.initialise()
        self.boot()
        self.create_database()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.crash()
        shutil.rmtree(self.root, ignore_errors=True)

    def initialise(self) -> None:
        raise NotImplementedError

    def boot(self) -> None:
        raise NotImplementedError

    def crash(self) -> None:
        raise NotImplementedError

    def create_database(self) -> None:
        raise NotImplementedError

    def count(self, sql: str, params: list[object]) -> int:
        raise NotImplementedError


class PostgresServer(ScratchServer):
    backend = "postgres"
    system_user = "postgres"

    @classmethod
    def bindir(cls) -> str | None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        return os.path.dirname(found[-1]) if found else None

    @classmethod
    def missing(cls) -> str | None:
        return None if cls.bindir() else "PostgreSQL server binaries (initdb, pg_ctl) not found"

    def pg_ctl(self, *args: str) -> None:
        self.call(f"{self.bindir()}/pg_ctl", "-D", str(self.root / "data"), *args)

    def initialise(self) -> None:
        self.call(
            f"{self.bindir()}/initdb",
            *("-D", str(self.root / "data"), "-A", "trust", "-U", "postgres", "--no-sync"),
        )

    def boot(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-l", str(self.root / "log"), "-o", options, "-w", "start")

    def crash(self) -> None:
        self.pg_ctl("-m", "immediate", "stop")  # no shutdown checkpoint: as abrupt as a crash

    def connect(self, dbname: str = DATABASE):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            connect_timeout=2,
        )

    def create_database(self) -> None:
        with self.connect("postgres") as db:
            db.execute(f"CREATE DATABASE {DATABASE}")

    def count(self, sql: str, params: list[object]) -> int:
        with self.connect() as db:
            row = db.execute(sql, params).fetchone()
        return int(row[0]) if row else 0


class MariaDBServer(ScratchServer):
    backend = "mysql"
    system_user = "mysql"

    @classmethod
    def missing(cls) -> str | None:
        server = shutil.which("mariadbd") or os.path.exists("/usr/sbin/mariadbd")
        if server and shutil.which("mariadb-install-db"):
            return None
        return "MariaDB server binaries (mariadbd, mariadb-install-db) not found"

    def __init__(self) -> None:
        super().__init__()
        self.process: subprocess.Popen[bytes] | None = None

    def initialise(self) -> None:
        self.call(
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={self.root / 'data'}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        )

    def boot(self) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        log = open(self.root / "log", "ab")  # noqa: SIM115 - the server keeps writing to it
        self.process = subprocess.Popen(
            [
                *self.as_user,
                server,
                "--no-defaults",
                f"--datadir={self.root / 'data'}",
                f"--socket={self.root / 'sock'}",
                f"--pid-file={self.root / 'pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--innodb-flush-log-at-trx-commit=2",  # a process crash loses no commit
                "--innodb-buffer-pool-size=64M",
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.connect(None).close()
                return
            except Exception:
                assert self.process.poll() is None, (self.root / "log").read_text()[-2000:]
                assert time.monotonic() < deadline, "MariaDB did not start in 60s"
                time.sleep(0.2)

    def crash(self) -> None:
        pid_file = self.root / "pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def connect(self, dbname: str | None = DATABASE):  # type: ignore[no-untyped-def]
        import MySQLdb

        options = {"db": dbname} if dbname else {}
        return MySQLdb.connect(
            host="127.0.0.1", port=self.port, user="root", passwd="", connect_timeout=2, **options
        )

    def create_database(self) -> None:
        db = self.connect(None)
        try:
            db.cursor().execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
        finally:
            db.close()

    def count(self, sql: str, params: list[object]) -> int:
        db = self.connect()
        try:
            cursor = db.cursor()
            cursor.execute(sql, params)
            row = cursor.fetchone()
        finally:
            db.close()
        return int(row[0]) if row else 0


SERVERS = {"postgresql": PostgresServer, "mysql": MariaDBServer}
