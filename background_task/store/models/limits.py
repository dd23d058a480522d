"""Concurrency and rate limits: the slots runs hold, and the starts a rate allows."""

from __future__ import annotations

from django.db import models

from background_task.core.limits import KEY_MAX_LENGTH
from background_task.core.options import TASK_ID_MAX_LENGTH
from background_task.store.models.routed import QueueManager


class ConcurrencySlot(models.Model):
    """Slot number ``slot`` (0 to the limit - 1) of a key, held by one run.

    The unique constraint on (key, slot) is the limit: a run that cannot
    insert a free slot number does not start. A row counts while the task it
    names runs under the same claim token; the worker deletes it when the
    run ends, and the workers' sweep deletes rows whose run ended otherwise
    (its worker was killed, say).
    """

    key = models.CharField(max_length=KEY_MAX_LENGTH)
    slot = models.PositiveIntegerField()
    task_id = models.CharField(max_length=TASK_ID_MAX_LENGTH, unique=True)
    claim_token = models.CharField(max_length=32)
    acquired_at = models.DateTimeField()

    objects = QueueManager()

    class Meta:
        db_table = "background_task_concurrencyslot"
        constraints = [
            models.UniqueConstraint(fields=["key", "slot"], name="background_task_one_run_per_slot")
        ]

    def __str__(self) -> str:
        return f"{self.key}[{self.slot}]: {self.task_id}"


class RateSlot(models.Model):
    """One of the N starts a rate of N per window allows for a key: a run may
    start once ``started_at`` is a window old, and moves it to now (in the
    database's clock). N slots, each used at most once per window, make at
    most N starts in any window."""

    key = models.CharField(max_length=KEY_MAX_LENGTH)
    slot = models.PositiveIntegerField()
    started_at = models.DateTimeField()

    objects = QueueManager()

    class Meta:
        db_table = "background_task_rateslot"
        constraints = [
            models.UniqueConstraint(
                fields=["key", "slot"], name="background_task_one_start_per_slot"
            )
        ]
        # A start reads its key's oldest rows: an index range, not a sort of
        # all N rows of the key.
        indexes = [models.Index(fields=["key", "started_at"], name="background_task_rate_oldest")]

    def __str__(self) -> str:
        return f"{self.key}[{self.slot}]"
