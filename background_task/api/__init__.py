"""Layer 3, the task API: the registry and discovery, the decorator's
``TaskProxy``, enqueueing, handles and control (cancel, retry, results),
eager mode and schedule definitions.

Imports :mod:`background_task.store` and :mod:`background_task.core`. Running a
task in this process (eager mode, ``run_next_task``) is the runtime's job: it
plugs in through :mod:`background_task.api.inprocess`.
"""
