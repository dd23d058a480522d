"""django-background-tasks 1.2.8's own test suite, run against this package.

1.2.8 ships its tests in its wheel (``background_task/tests/``: 55 tests in
``test_tasks.py``, run under ``test_settings.py`` and ``test_settings_async.py``).
This script fetches that wheel from PyPI (nothing of it is committed), copies
its tests into a scratch project as the package ``bgt128_tests`` (task names
in the expected values follow the module they now live in; ``mock`` is the
standard library's ``unittest.mock``), and runs them with Django's test
runner against this checkout, on the database that DB_BACKEND names (their
own SQLite settings, or the test project's PostgreSQL or MariaDB settings
under another test database name).

``python tests/legacy_suite.py [sync|async ...]`` prints each run's result
and a ``N passed, N failed`` line; ``tests/test_legacy_suite.py`` runs it in
``make test``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENT = "django-background-tasks==1.2.8"
PACKAGE = "bgt128_tests"
#: Where the wheel is kept between runs (inside the virtualenv, never committed).
CACHE = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "legacy-1.2.8-wheel")
MODES = {"sync": "settings", "async": "settings_async"}
TEST_FILES = ("test_tasks.py", "test_settings.py", "test_settings_async.py")

SETTINGS = '''\
"""1.2.8's test settings, on the database DB_BACKEND names."""

import os

from {package}.test_settings import *  # noqa: F403

if os.environ.get("DB_BACKEND", "sqlite") != "sqlite":
    # The test project's database settings (DB_TEST_NAME keeps its test
    # database apart from the main suite's).
    from tests.settings import DATABASES  # noqa: F401
'''


class Unavailable(Exception):
    """The 1.2.8 wheel could not be fetched (offline, say)."""


@dataclass
class Result:
    mode: str
    ran: int
    failures: int
    errors: int
    output: str

    @property
    def failed(self) -> int:
        return self.failures + self.errors

    @property
    def passed(self) -> int:
        return self.ran - self.failed


def wheel() -> str:
    """The path of the 1.2.8 wheel, downloaded once into :data:`CACHE`."""
    found = glob.glob(os.path.join(CACHE, "django_background_tasks-1.2.8-*.whl"))
    if found:
        return found[0]
    os.makedirs(CACHE, exist_ok=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", CACHE, REQUIREMENT],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    found = glob.glob(os.path.join(CACHE, "django_background_tasks-1.2.8-*.whl"))
    if download.returncode != 0 or not found:
        raise Unavailable(f"pip download {REQUIREMENT} failed: {download.stderr.strip()[-500:]}")
    return found[0]


def scratch_project(directory: str) -> None:
    """Write the ``bgt128_tests`` package (1.2.8's tests) and a ``mock`` shim."""
    package = os.path.join(directory, PACKAGE)
    os.makedirs(package)
    with zipfile.ZipFile(wheel()) as archive:
        for name in TEST_FILES:
            text = archive.read(f"background_task/tests/{name}").decode("utf-8")
            # Expected default task names are module paths: follow the copy.
            text = text.replace("background_task.tests.", f"{PACKAGE}.")
            with open(os.path.join(package, name), "w", encoding="utf-8") as handle:
                handle.write(text)
    with open(os.path.join(package, "__init__.py"), "w") as handle:
        handle.write("")
    for mode, module in MODES.items():
        with open(os.path.join(package, f"{module}.py"), "w") as handle:
            handle.write(SETTINGS.format(package=PACKAGE))
            if mode == "async":
                handle.write("\nBACKGROUND_TASK_RUN_ASYNC = True\n")
    with open(os.path.join(directory, "mock.py"), "w") as handle:
        handle.write('"""1.2.8\'s tests import the mock backport."""\n\n')
        handle.write("from unittest.mock import *  # noqa: F403\n")


def run(mode: str, directory: str) -> Result:
    """Run 1.2.8's tests under one of its two settings modules."""
    backend = os.environ.get("DB_BACKEND", "sqlite")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([directory, ROOT]),
        DB_TEST_NAME=f"test_bgt128_{mode}",
        DJANGO_SETTINGS_MODULE=f"{PACKAGE}.{MODES[mode]}",
    )
    env.pop("DB_PREPARED", None)
    process = subprocess.run(
        [sys.executable, "-m", "django", "test", f"{PACKAGE}.test_tasks", "--noinput", "-v", "1"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = process.stdout + process.stderr
    ran = re.search(r"^Ran (\d+) tests?", output, re.M)
    summary = re.search(r"^FAILED \((.*)\)$", output, re.M)
    counts = dict(re.findall(r"(failures|errors)=(\d+)", summary.group(1))) if summary else {}
    if ran is None or (process.returncode != 0 and summary is None):
        raise RuntimeError(f"1.2.8's suite did not run ({mode}, {backend}):\n{output[-3000:]}")
    return Result(
        mode, int(ran.group(1)), int(counts.get("failures", 0)), int(counts.get("errors", 0)),
        output,
    )  # fmt: skip


def run_all(modes: list[str]) -> list[Result]:
    directory = tempfile.mkdtemp(prefix="bgt128-")
    try:
        scratch_project(directory)
        return [run(mode, directory) for mode in modes]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    modes = sys.argv[1:] or list(MODES)
    try:
        results = run_all(modes)
    except Unavailable as exc:
        print(f"skipped: {exc}")
        return 0 if os.environ.get("CI", "").lower() not in ("1", "true", "yes") else 1
    for result in results:
        if result.failed:
            print(result.output)
        print(f"1.2.8 suite, {result.mode} settings: {result.passed} of {result.ran} passed")
    print(f"{sum(r.passed for r in results)} passed, {sum(r.failed for r in results)} failed")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
