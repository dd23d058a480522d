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
    totals: dict[str, int] = {}
    failed_backends = []
    for backend in backends:
        print(f"\n===== {backend} =====", flush=True)
        env = dict(os.environ, DB_BACKEND=backend, PYTHONPATH=ROOT)
        process = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *sys.argv[1:]],
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
            failed_backends.append(backend)
    print(f"\n===== databases tested: {', '.join(backends)} =====")
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
