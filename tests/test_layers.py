"""The layering contract (tests/layers.py) holds, and would catch a break."""

import importlib
import os
import pathlib
import re
import textwrap

import django
import pytest

from tests import layers


def test_the_package_keeps_its_layers():
    assert layers.problems() == []


def write(root, files):
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(textwrap.dedent(text))


def test_an_upward_import_a_cycle_and_a_face_import_are_reported(tmp_path):
    write(
        tmp_path,
        {
            "background_task/__init__.py": "",
            "background_task/models.py": "from background_task.store.rows import build\n",
            "background_task/core/__init__.py": "",
            "background_task/core/status.py": "WAITING = 'waiting'\n",
            "background_task/store/__init__.py": "",
            # A function-local import counts as much as one at the top.
            "background_task/store/rows.py": """
                from background_task.core import status

                def build():
                    from background_task.runtime.worker import Worker
            """,
            "background_task/runtime/__init__.py": "",
            "background_task/runtime/worker.py": "from background_task.store import rows\n",
            "background_task/api/__init__.py": "",
            "background_task/api/proxy.py": """
                from typing import TYPE_CHECKING

                import background_task.models

                if TYPE_CHECKING:  # annotations only: not an import at run time
                    from background_task.runtime.worker import Worker
            """,
        },
    )
    found = layers.problems(str(tmp_path))
    assert any(
        "background_task.store.rows (layer 2, store) imports background_task.runtime.worker" in line
        for line in found
    ), found
    assert any("imports the top-level module background_task.models" in line for line in found)
    assert any(
        line.startswith(
            "import cycle between 2 modules: background_task.runtime.worker, "
            "background_task.store.rows"
        )
        for line in found
    ), found
    assert not any("api.proxy (layer 3" in line for line in found), found


def test_core_stays_free_of_database_code(tmp_path):
    write(
        tmp_path,
        {
            "background_task/__init__.py": "",
            "background_task/core/__init__.py": "",
            "background_task/core/retry.py": "def f():\n    from django.db import models\n",
        },
    )
    assert layers.problems(str(tmp_path)) == [
        "background_task/core/retry.py:2: background_task.core.retry (core) imports "
        "django.db: no database code here"
    ]


def test_the_architecture_page_names_only_what_exists():
    page = pathlib.Path(layers.ROOT, "docs", "architecture.md").read_text()
    dotted = set(re.findall(r"`(background_task(?:\.\w+)+)`", page))
    paths = set(re.findall(r"`(background_task/[\w/]+(?:\.py)?)`", page))
    assert len(dotted) > 20 and paths
    for name in sorted(dotted):
        if name.startswith("background_task.contrib.django_tasks") and django.VERSION < (6, 0):
            assert pathlib.Path(layers.ROOT, "background_task/contrib/django_tasks.py").exists()
            continue  # importing it needs Django 6
        try:
            importlib.import_module(name)
        except ImportError:
            module, _, attribute = name.rpartition(".")
            assert hasattr(importlib.import_module(module), attribute), name
    for path in sorted(paths):
        assert os.path.exists(os.path.join(layers.ROOT, path)), path
    # Every folder of the layers is on the page.
    for package in layers.LAYERS:
        assert f"`background_task/{package}/`" in page, package


def test_an_empty_hook_names_the_module_that_fills_it():
    from django.core.exceptions import ImproperlyConfigured

    from background_task.core.hooks import Hook

    hook: Hook[object] = Hook("doing X", "background_task.somewhere")
    with pytest.raises(ImproperlyConfigured, match="Nothing provides doing X: background_task"):
        hook.get()
    assert Hook("doing Y", "m", default="fallback").get() == "fallback"
    assert hook.register("filled") == "filled" and hook.get() == "filled"
