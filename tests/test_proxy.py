import logging

import pytest

import background_task
from background_task import background
from background_task.api.proxy import TaskProxy
from background_task.api.registry import tasks
from background_task.core.schedules import TaskSchedule
from tests.testapp import tasks as fixtures


def test_bare_and_called_forms_register_by_module_and_name():
    assert isinstance(fixtures.noop, TaskProxy)
    assert fixtures.noop.name == "tests.testapp.tasks.noop"
    assert str(fixtures.noop) == "TaskProxy(tests.testapp.tasks.noop)"
    assert tasks._tasks["tests.testapp.tasks.noop"] is fixtures.noop
    assert fixtures.custom.name == "custom.name"


def test_proxy_attributes():
    assert fixtures.add.schedule == TaskSchedule(run_at=60)
    assert fixtures.record.queue == "records"
    assert fixtures.add.now(2, 3) == 5
    assert fixtures.add.task_function(2, 3) == 5
    assert fixtures.custom.max_attempts == 2
    assert fixtures.custom.timeout == 30
    assert fixtures.custom.schedule.priority == 5


def test_legacy_import_paths():
    from background_task.exceptions import BackgroundTaskError, InvalidTaskError
    from background_task.models import CompletedTask, Task  # noqa: F401
    from background_task.settings import app_settings  # noqa: F401
    from background_task.signals import task_created, task_successful  # noqa: F401
    from background_task.tasks import TaskProxy as LegacyProxy
    from background_task.tasks import TaskSchedule as LegacySchedule
    from background_task.tasks import background as legacy_background
    from background_task.tasks import tasks as legacy_tasks

    assert legacy_tasks is tasks and LegacyProxy is TaskProxy and LegacySchedule is TaskSchedule
    assert callable(legacy_background) and callable(legacy_tasks.run_next_task)
    assert issubclass(InvalidTaskError, BackgroundTaskError)
    assert BackgroundTaskError("x", errors=[1]).errors == [1]
    assert background_task.WAITING == "waiting" and background_task.TaskProxy is TaskProxy


def test_positional_name_and_options():
    proxy = background("tests.positional", 30, "q1")(lambda: None)
    assert (proxy.name, proxy.queue) == ("tests.positional", "q1")
    assert proxy.schedule == TaskSchedule(run_at=30)


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"name": "x" * 191}, ValueError, "191 characters long; the limit is 190"),
        ({"queue": "q" * 191}, ValueError, "Queue name"),
        ({"verbose_name": "v" * 256}, ValueError, "verbose_name"),
        ({"max_attempts": 0}, ValueError, "max_attempts must be a positive integer"),
        ({"timeout": -1}, ValueError, "timeout must be a positive number"),
        ({"schedule": "soon"}, TypeError, "schedule must be"),
        ({"priority": 1.5}, TypeError, "priority must be an integer"),
    ],
)
def test_bad_decorator_options_fail_at_decoration(options, error, fragment):
    with pytest.raises(error, match=fragment.replace("(", r"\(")):
        background(**options)(lambda: None)


def test_default_name_too_long_fails_at_decoration():
    def f():
        pass

    f.__qualname__ = "g" * 200
    with pytest.raises(ValueError, match="Task name"):
        background(f)


def test_registering_a_name_twice_keeps_the_last_and_warns(caplog):
    first = background(name="tests.twice")(lambda: 1)
    with caplog.at_level(logging.WARNING, logger="background_task"):
        second = background(name="tests.twice")(lambda: 2)
    assert tasks.get("tests.twice") is second and first is not second
    assert "registered again" in caplog.text
