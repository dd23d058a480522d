"""Layer 4, the runtime: running one task (``execution``), the worker loop,
liveness and heartbeats, time-limit slots, the supervisor, the scheduler that
fires schedules, log streams and the embedded worker.

Imports :mod:`background_task.api`, :mod:`background_task.store` and
:mod:`background_task.core`. Kinds of task that need their own way of being
called (the django.tasks backend's) plug in through
:mod:`background_task.runtime.invocation`.
"""
