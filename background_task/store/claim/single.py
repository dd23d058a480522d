"""Claiming one task for a caller that runs it in its own process.

What django-background-tasks 1.2.8's ``DBTaskRunner.get_task_to_run`` did,
with our claim: the next due task through the database's strategy, else a
task whose lock expired with nobody registered behind it.
"""

from __future__ import annotations

from django.utils import timezone

from background_task.store.claim import ClaimRequest, get_strategy
from background_task.store.models import Task
from background_task.store.pausing import paused_names
from background_task.store.routing import queue_alias

#: Expired locks tried per call, at most (1.2.8 tried its first five candidates).
TAKEOVER_CANDIDATES = 5


def claim_one(
    worker_id: str, names: list[str], queue: str | None = None, *, using: str | None = None
) -> Task | None:
    """Claim the next due task of one of ``names`` (of ``queue``, if given) for
    ``worker_id``; None when there is none.

    When nothing waits, a running task whose claim is older than
    BACKGROUND_TASK_MAX_RUN_TIME and whose holder never registered as a
    worker (a 1.2.8 process, ``task.lock(...)`` by hand, ``run_next_task()``
    in a process that died) is taken over, as 1.2.8 did: the new claim
    token fences the old holder, whose writes then change nothing. A task
    held by a registered worker is never taken; the recovery of lost
    workers settles those. Paused queues are left alone.
    """
    using = queue_alias(using)
    now = timezone.now()
    paused = paused_names(using)
    request = ClaimRequest(worker_id, 1, now, names, [queue] if queue else None, paused=paused)
    claimed = get_strategy(using).claim(request)
    if claimed:
        return claimed[0]
    expired = Task.objects.using(using).orphaned(now, None).filter(task_name__in=names)
    if queue:
        expired = expired.filter(queue=queue)
    if paused:
        expired = expired.outside_queues(paused)
    for task in expired.in_claim_order()[:TAKEOVER_CANDIDATES]:
        taken: Task | None = task.lock(worker_id)
        if taken is not None:
            return taken
    return None
