from django.db import models


class UpgradeRun(models.Model):
    """One run of an upgrade fixture task."""

    key = models.CharField(max_length=100)
    package = models.CharField(max_length=100)
