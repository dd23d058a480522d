"""URLs of the status endpoint: ``path("tasks/", include("background_task.web.urls"))``."""

from django.urls import path

from background_task.web import views

app_name = "background_task"

urlpatterns = [
    path("", views.task_list, name="task-list"),
    path("workflows/<str:workflow_id>/", views.workflow_status, name="workflow-status"),
    path("<str:task_id>/", views.task_status, name="task-status"),
]
