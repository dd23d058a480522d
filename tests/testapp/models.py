from django.db import models


class Execution(models.Model):
    """One run of a fixture task, recorded by the task itself."""

    task_name = models.CharField(max_length=190)
    key = models.CharField(max_length=190, blank=True)
    worker_pid = models.IntegerField(default=0)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)


class Counter(models.Model):
    """A named count that atomic fixture tasks increment."""

    name = models.CharField(max_length=64, unique=True)
    value = models.IntegerField(default=0)
