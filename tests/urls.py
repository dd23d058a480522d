from django.contrib import admin
from django.urls import include, path

from tests import async_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("tasks/", include("background_task.urls")),
    path("async/enqueue/", async_views.enqueue),
    path("async/result/<str:task_id>/", async_views.result),
    path("async/cancel/<str:task_id>/", async_views.cancel),
]

try:
    from background_task.contrib.prometheus import metrics_view
except ImportError:  # prometheus-client is not installed (the Django 6 pass)
    pass
else:
    urlpatterns.append(path("metrics/", metrics_view))
