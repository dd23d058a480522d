"""Read the upgraded database back with this package (run by test_upgrade)."""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.upgrade_settings")
django.setup()

from background_task.models import CompletedTask, Task  # noqa: E402
from tests.upgradeapp.models import UpgradeRun  # noqa: E402

fields = [
    "task_id",
    "task_name",
    "task_params",
    "status",
    "attempts",
    "priority",
    "queue",
    "locked_by",
    "verbose_name",
    "creator_object_id",
    "repeat",
    "failed_at",
    "last_error",
]


def rows(model):
    return [
        {k: str(v) if v is not None else None for k, v in row.items()}
        for row in model.objects.order_by("id").values(*fields)
    ]


json.dump(
    {
        "tasks": rows(Task),
        "completed": rows(CompletedTask),
        "runs": list(UpgradeRun.objects.order_by("id").values_list("key", "package")),
    },
    sys.stdout,
)
