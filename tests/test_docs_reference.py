"""The reference docs name everything public: settings, check ids, commands
and their options, signals, and the package's exported names."""

from __future__ import annotations

import pathlib
import re

import django
import pytest
from django.core.management import get_commands, load_command_class
from django.dispatch import Signal

import background_task
from background_task import signals
from tests.conftest import ROOT

PACKAGE = pathlib.Path(ROOT, "background_task")
DOCS = pathlib.Path(ROOT, "docs")
OWN_COMMANDS = sorted(
    name for name, app in get_commands().items() if app == "background_task"
)  # fmt: skip
# Options every Django command has; Django documents them.
DJANGO_OPTIONS = {
    "--version", "--verbosity", "--settings", "--pythonpath", "--traceback",
    "--no-color", "--force-color", "--skip-checks", "--help",
}  # fmt: skip


def doc(name: str) -> str:
    return (DOCS / name).read_text()


def source() -> str:
    return "\n".join(path.read_text() for path in PACKAGE.rglob("*.py"))


def test_every_setting_is_in_the_settings_reference() -> None:
    names = set(re.findall(r"\bBACKGROUND_TASK_[A-Z_]+[A-Z]\b", source()))
    names -= {"BACKGROUND_TASK_EMBEDDED", "BACKGROUND_TASK_EMBEDDED_LOCK_FD"}  # environment
    assert "BACKGROUND_TASK_AUTOSTART" in names
    reference = doc("settings.md")
    missing = sorted(name for name in names if f"`{name}`" not in reference)
    assert not missing, f"settings missing from docs/settings.md: {missing}"


def check_ids_in(text: str) -> set[str]:
    ids = set(re.findall(r"background_task\.([EW]\d{3})", text))
    for first, last in re.findall(r"`?background_task\.E(\d{3})`?-`?E?(\d{3})`", text):
        ids |= {f"E{n:03d}" for n in range(int(first), int(last) + 1)}
    return ids


def test_every_check_id_is_in_the_checks_reference() -> None:
    used = check_ids_in(source())
    documented = check_ids_in(doc("checks.md"))
    assert used - documented == set(), f"check ids missing from docs/checks.md: {used - documented}"


def test_every_command_and_option_is_in_the_command_reference() -> None:
    reference = doc("command.md")
    missing = []
    for name in OWN_COMMANDS:
        if f"`{name}`" not in reference and f"manage.py {name}" not in reference:
            missing.append(name)
            continue
        parser = load_command_class("background_task", name).create_parser("manage.py", name)
        for action in parser._actions:
            for option in action.option_strings:
                documented = option in reference or option in DJANGO_OPTIONS
                if option.startswith("--") and not documented:
                    missing.append(f"{name} {option}")
    assert not missing, f"missing from docs/command.md: {missing}"


def test_every_signal_is_in_the_signals_reference() -> None:
    reference = doc("signals.md")
    names = [name for name, value in vars(signals).items() if isinstance(value, Signal)]
    assert names
    missing = [name for name in names if f"`{name}`" not in reference]
    assert not missing, f"signals missing from docs/signals.md: {missing}"


def test_every_exported_name_is_in_the_api_reference() -> None:
    reference = doc("api.md")
    missing = [name for name in background_task.__all__ if name not in reference]
    assert not missing, f"names of background_task.__all__ missing from docs/api.md: {missing}"


@pytest.mark.skipif(django.VERSION < (6, 0), reason="the django.tasks backend needs Django 6")
def test_backend_options_are_documented() -> None:
    reference = doc("django-tasks.md")
    for option in ("MAX_ATTEMPTS", "TIMEOUT"):
        assert f'"{option}"' in reference or f"`{option}`" in reference
