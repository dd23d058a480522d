"""Concurrency limits: a row per key to serialize its slot changes, and a row
per run that holds a slot."""

from __future__ import annotations

from django.db import models

from background_task.core.limits import KEY_MAX_LENGTH
from background_task.core.options import TASK_ID_MAX_LENGTH


class ConcurrencyKey(models.Model):
    """One row per concurrency key ever used: the changes to the key's slots
    update it first, so they happen one at a time on every database."""

    key = models.CharField(max_length=KEY_MAX_LENGTH, unique=True)
    touched_at = models.DateTimeField()

    class Meta:
        db_table = "background_task_concurrencykey"

    def __str__(self) -> str:
        return self.key


class ConcurrencySlot(models.Model):
    """A run that holds one of its key's slots. A slot counts only while the
    task it names is running under the same claim token: every way a run
    ends (success, failure, retry, cancellation, recovery of a lost worker)
    frees its slot without touching this table, and stale rows are removed
    when the key's slots are next counted."""

    key = models.CharField(max_length=KEY_MAX_LENGTH, db_index=True)
    task_id = models.CharField(max_length=TASK_ID_MAX_LENGTH, unique=True)
    claim_token = models.CharField(max_length=32)
    acquired_at = models.DateTimeField()

    class Meta:
        db_table = "background_task_concurrencyslot"

    def __str__(self) -> str:
        return f"{self.key}: {self.task_id}"
