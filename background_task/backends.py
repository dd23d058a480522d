"""The django.tasks backend's documented path, ``background_task.backends.DatabaseBackend``.

It lives in :mod:`background_task.contrib.django_tasks`; importing either needs Django 6.0+.
"""

from background_task.contrib.django_tasks import *  # noqa: F403
from background_task.contrib.django_tasks import __all__  # noqa: F401
