"""`make demo` keeps working: it drains its queue with the real worker."""

import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="the demo runs on SQLite only")
def test_demo_runs_to_a_clean_summary():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "demo", "run.py")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done       390 (of which 10 after a retry)" in result.stdout
    assert "failed     3 (bad input, not retried)" in result.stdout
    assert "tasks left locked after SIGTERM: 0" in result.stdout
    assert connection.vendor == "sqlite"
