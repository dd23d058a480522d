"""Schedule definitions' documented path (``background_task.periodic.ScheduleError``).

They live in :mod:`background_task.api.periodic`.
"""

from background_task.api.periodic import ScheduleDefinition, ScheduleError

__all__ = ["ScheduleDefinition", "ScheduleError"]
