"""Project hygiene, checked once per run (on the SQLite pass): lint, types, docs."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import MAIN_PASS, ROOT

pytestmark = pytest.mark.skipif(not MAIN_PASS, reason="checked once, on the main SQLite pass")


def run(*args: str) -> None:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def tool(name: str) -> str:
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        path = shutil.which(name) or ""
    if not path:
        pytest.skip(f"{name} is not installed")
    return path


def test_ruff():
    run(tool("ruff"), "check", ".")
    run(tool("ruff"), "format", "--check", ".")


def test_mypy_strict():
    run(sys.executable, "-m", "mypy", "background_task")


def test_docs_build_without_warnings():
    run(tool("mkdocs"), "build", "--strict", "--quiet", "--site-dir", tempfile.mkdtemp())
