"""``process_tasks --log-format json``: one JSON object per line, with the
worker, task and outcome of each line, from real worker processes."""

from __future__ import annotations

import json
import logging

import pytest

from background_task.runtime.jsonlog import JsonFormatter
from tests.conftest import subprocess_env
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def _lines(output: str) -> list[dict]:
    parsed = []
    for line in output.splitlines():
        if not line.strip():
            continue
        parsed.append(json.loads(line))  # every line is JSON
    return parsed


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_line_is_json_with_the_run_fields(start_worker, workers):
    ok = fixtures.record("json")
    bad = fixtures.fail("broken on purpose")
    chatty = fixtures.chatty("hello from the task")
    code, output = start_worker(
        "--burst",
        "--log-std",
        "--log-format",
        "json",
        "--workers",
        workers,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings"),
    ).wait(120)
    assert code == 0, output
    lines = _lines(output)
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in lines)
    ends = {line["task_id"]: line for line in lines if "outcome" in line}
    assert ends[ok.task_id]["outcome"] == "done"
    assert ends[ok.task_id]["task_name"] == "tests.testapp.tasks.record"
    assert ends[ok.task_id]["queue"] == "records" and ends[ok.task_id]["attempt"] == 1
    assert isinstance(ends[ok.task_id]["duration"], float)
    assert ends[bad.task_id]["outcome"] == "retry" and ends[bad.task_id]["attempt"] == 1
    assert ends[bad.task_id]["level"] == "INFO"
    assert all(line.get("worker_id") for line in ends.values())
    starts = [line for line in lines if line["message"].startswith(f"Task {ok.task_id} (")]
    assert starts and starts[0]["task_id"] == ok.task_id
    # A line the task's own code wrote while it ran (--log-std) carries the task too.
    [said] = [line for line in lines if line["message"] == "hello from the task"]
    assert said["task_id"] == chatty.task_id and said["attempt"] == 1


def test_the_setting_chooses_json_and_a_bad_value_is_refused(start_worker, tmp_path):
    settings_file = tmp_path / "json_settings.py"
    settings_file.write_text(
        "from tests.logging_settings import *\nBACKGROUND_TASK_LOG_FORMAT = 'json'\n"
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="json_settings")
    env["PYTHONPATH"] += f":{tmp_path}"
    fixtures.noop()
    code, output = start_worker("--burst", env=env).wait(120)
    assert code == 0, output
    assert _lines(output)
    settings_file.write_text(
        "from tests.logging_settings import *\nBACKGROUND_TASK_LOG_FORMAT = 'xml'\n"
    )
    code, output = start_worker("--burst", env=env).wait(120)
    assert code != 0
    assert "BACKGROUND_TASK_LOG_FORMAT must be 'text' or 'json'" in output


def test_the_text_format_is_unchanged(start_worker):
    task = fixtures.noop()
    code, output = start_worker(
        "--burst", env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.logging_settings")
    ).wait(120)
    assert code == 0, output
    assert f"Task {task.task_id} (tests.testapp.tasks.noop) queue=- attempt=1 done in" in output
    assert not output.lstrip().startswith("{")


def test_an_exception_is_one_field_of_one_line():
    logger = logging.getLogger("tests.json")
    try:
        raise ValueError("bad")
    except ValueError:
        record = logger.makeRecord("tests.json", logging.ERROR, __file__, 1, "it broke", (), None)
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "it broke" and "ValueError: bad" in data["exception"]
    assert data["time"].endswith("+00:00")


def test_a_project_s_logging_config_can_use_the_formatter():
    """LOGGING is configured before Django loads the apps: the formatter's
    module must import without the models."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import logging, logging.config\n"
        "logging.config.dictConfig({'version': 1, 'formatters': {'json': {'()': "
        "'background_task.runtime.jsonlog.JsonFormatter'}}, 'handlers': {'out': {'class': "
        "'logging.StreamHandler', 'formatter': 'json'}}, 'root': {'handlers': ['out'], "
        "'level': 'INFO'}})\n"
        "logging.getLogger('project').info('configured before setup')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr)
    assert line["message"] == "configured before setup" and line["logger"] == "project"
