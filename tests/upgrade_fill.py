"""Build and fill a database with django-background-tasks 1.2.8 (run by test_upgrade).

Runs with the real 1.2.8 package first on sys.path. Prints a JSON summary.
"""

import json
import os
import sys
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.upgrade_settings")
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

import background_task  # noqa: E402

assert background_task.__version__ == "1.2.8", background_task.__file__

call_command("migrate", verbosity=0)
from background_task.models import CompletedTask, Task  # noqa: E402
from background_task.tasks import tasks  # noqa: E402
from tests.upgradeapp.tasks import upgrade_record  # noqa: E402

user = User.objects.create(username="creator")
upgrade_record("done-by-1.2.8")
assert tasks.run_next_task() is True  # a CompletedTask row written by 1.2.8
upgrade_record("plain")
upgrade_record("queued", priority=5, queue="q1")
upgrade_record("created", creator=user, verbose_name="made by a user")
upgrade_record("repeating", repeat=Task.HOURLY)
upgrade_record("future", schedule=3600)
retried = upgrade_record("retried")
Task.objects.filter(pk=retried.pk).update(attempts=2, last_error="Traceback: earlier failure")
stuck = upgrade_record("stuck")
Task.objects.filter(pk=stuck.pk).update(
    locked_by="4242", locked_at=timezone.now() - timedelta(hours=2)
)
json.dump(
    {
        "tasks": Task.objects.count(),
        "completed": CompletedTask.objects.count(),
        "package": background_task.__file__,
    },
    sys.stdout,
)
