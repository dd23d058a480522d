"""Run the whole test suite on every reachable database (``make test``).

SQLite always; PostgreSQL and MariaDB/MySQL when reachable. With CI=true
both servers are required: an unreachable one fails the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: What a pass on psycopg2 runs: the code that talks to the driver (COPY or
#: multi-row INSERTs, prepared claims, LISTEN) and real workers on it.
PSYCOPG2_TESTS = (
    "tests/test_claim.py",
    "tests/test_prepared_claims.py",
    "tests/test_inserting.py",
    "tests/test_deleting.py",
    "tests/test_enqueue.py",
    "tests/test_worker.py",
    "tests/test_liveness.py",
    "tests/test_process_tasks.py",
)


def postgres_reachable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(
            host=os.environ.get("DB_HOST", "127.0.0.1"),
            port=5432,
            user="postgres",
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except Exception as exc:
        return f"cannot connect: {exc}".strip()
    return None


def mysql_reachable() -> str | None:
    try:
        import MySQLdb
    except ImportError:
        return "mysqlclient is not installed"
    try:
        MySQLdb.connect(
            host=os.environ.get("DB_HOST", "127.0.0.1"),
            port=3306,
            user="root",
            passwd="",
            connect_timeout=3,
        ).close()
    except Exception as exc:
        return f"cannot connect: {exc}"
    return None


def counts(output: str) -> dict[str, int]:
    tail = output.strip().splitlines()[-1] if output.strip() else ""
    return {
        word: int(number)
        for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", tail)
    }


def main() -> int:
    backends = ["sqlite"]
    problems = []
    for name, probe in (("postgres", postgres_reachable), ("mysql", mysql_reachable)):
        reason = probe()
        if reason is None:
            backends.append(name)
        elif CI:
            problems.append(f"{name}: {reason}")
        else:
            print(f"-- skipping {name}: {reason}", flush=True)
    if problems:
        print("CI needs every database; unreachable: " + "; ".join(problems), flush=True)
        return 2
    passes = [(backend, sys.executable, backend, list(sys.argv[1:])) for backend in backends]
    if "postgres" in backends:
        # The tuning docs/performance.md offers: psycopg's server-side
        # binding and prepared statements (tests/settings.py reads DB_PREPARED).
        passes.append(
            (
                "postgres, prepared statements",
                sys.executable,
                "postgres+prepared",
                list(sys.argv[1:]),
            )
        )
        # The driver-dependent parts on psycopg2, which Django also
        # supports (tests/settings.py reads DB_DRIVER).
        passes.append(
            (
                "postgres, psycopg2",
                sys.executable,
                "postgres+psycopg2",
                list(PSYCOPG2_TESTS),
            )
        )
    django6 = os.path.join(ROOT, ".venv-django6", "bin", "python")
    if os.path.exists(django6):
        # The whole suite on SQLite with Django 6 (and the newest Python), and
        # the django.tasks backend on every database.
        passes.append(("sqlite, Django 6", django6, "sqlite", list(sys.argv[1:])))
        for backend in backends[1:]:
            passes.append(
                (f"{backend}, Django 6", django6, backend, ["tests/test_django_tasks.py"])
            )
        django60 = os.path.join(ROOT, ".venv-django60", "bin", "python")
        if os.path.exists(django60):
            for backend in backends:
                passes.append(
                    (f"{backend}, Django 6.0", django60, backend, ["tests/test_django_tasks.py"])
                )
        elif CI:
            print("CI needs the Django 6.0 environment (.venv-django60).", flush=True)
            return 2
    elif CI:
        print("CI needs the Django 6 environment (.venv-django6); see the Makefile.", flush=True)
        return 2
    else:
        print("-- skipping Django 6: no Python 3.12+ found for .venv-django6", flush=True)
    totals: dict[str, int] = {}
    failed_passes = []
    for label, python, backend, arguments in passes:
        print(f"\n===== {label} =====", flush=True)
        env = dict(os.environ, DB_BACKEND=backend, PYTHONPATH=ROOT)
        if backend.endswith("+prepared"):
            env.update(DB_BACKEND=backend.removesuffix("+prepared"), DB_PREPARED="1")
        if backend.endswith("+psycopg2"):
            env.update(DB_BACKEND=backend.removesuffix("+psycopg2"), DB_DRIVER="psycopg2")
        process = subprocess.run(
            [python, "-m", "pytest", "-q", *arguments],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        print(process.stdout, end="", flush=True)
        for word, number in counts(process.stdout).items():
            totals[word.rstrip("s") if word.startswith("error") else word] = (
                totals.get(word.rstrip("s") if word.startswith("error") else word, 0) + number
            )
        if process.returncode != 0:
            failed_passes.append(label)
    failed_backends = failed_passes
    print(f"\n===== tested: {'; '.join(label for label, *_ in passes)} =====")
    if failed_backends:
        print(f"failures on: {', '.join(failed_backends)}")
    failed = totals.get("failed", 0) + totals.get("error", 0)
    line = f"{totals.get('passed', 0)} passed, {failed} failed"
    if totals.get("skipped"):
        line += f", {totals['skipped']} skipped"
    print(line)
    return 1 if failed_backends else 0


if __name__ == "__main__":
    sys.exit(main())
