"""The dashboard's URLs, for ``include("background_task.urls")``.

See :mod:`background_task.web.urls`.
"""

from background_task.web.urls import (
    app_name,
    urlpatterns,
)

__all__ = [
    "app_name",
    "urlpatterns",
]
