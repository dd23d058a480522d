import pytest
from django.test import override_settings

from background_task.api.registry import autodiscover, tasks
from background_task.exceptions import TaskDiscoveryError, TaskNotRegistered

BASE_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "background_task",
]


def test_get_unknown_name_is_a_clear_error():
    with pytest.raises(TaskNotRegistered, match=r"No task named 'nope\.nothing'"):
        tasks.get("nope.nothing")


def test_autodiscover_finds_apps_named_by_appconfig_path():
    with override_settings(INSTALLED_APPS=[*BASE_APPS, "tests.testapp.apps.TestAppConfig"]):
        autodiscover()
    assert "tests.testapp.tasks.noop" in tasks


def test_missing_tasks_module_is_fine():
    with override_settings(INSTALLED_APPS=[*BASE_APPS, "django.contrib.sessions"]):
        autodiscover()


def test_import_error_inside_tasks_module_is_reported_with_its_name():
    with (
        override_settings(INSTALLED_APPS=[*BASE_APPS, "tests.brokenapp"]),
        pytest.raises(
            TaskDiscoveryError,
            match=r"Importing tests\.brokenapp\.tasks failed: .*a_module_that_does_not_exist",
        ),
    ):
        autodiscover()


@pytest.mark.skipif(__import__("django").VERSION >= (6, 0), reason="Django 6 has django.tasks")
def test_the_django_tasks_backend_says_it_needs_django_6():
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=r"needs Django 6\.0 or later"):
        importlib.import_module("background_task.backends")
