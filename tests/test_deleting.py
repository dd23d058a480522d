"""The worker's own deletes and row reads skip the ORM's per-call work only
where the ORM would do nothing more (no receivers, no cascades)."""

from __future__ import annotations

import pytest
from django.db.models.signals import post_delete, post_init

from background_task.models import Task
from background_task.store.deleting import MAX_IDS, delete_claimed
from background_task.store.models import tasks_from_db
from tests.testapp import tasks as fixtures

pytestmark = pytest.mark.django_db


def claimed(count: int, token: str) -> list[int]:
    """Ids of ``count`` new tasks held under claim ``token``."""
    ids = [task.pk for task in fixtures.add.bulk([(n, n) for n in range(count)])]
    Task.objects.filter(pk__in=ids).update(claim_token=token)
    return ids


def test_deletes_only_the_rows_still_held_under_the_claim():
    mine, other = claimed(3, "mine"), claimed(2, "other")
    assert delete_claimed("default", "mine", [*mine, other[0]]) == 3
    assert sorted(Task.objects.values_list("pk", flat=True)) == sorted(other)
    assert delete_claimed("default", "mine", mine) == 0


def test_deletes_more_ids_than_one_statement_takes():
    ids = claimed(MAX_IDS * 2 + 1, "big")
    assert delete_claimed("default", "big", ids) == len(ids)
    assert not Task.objects.exists()


def test_delete_receivers_still_see_each_row():
    ids = claimed(2, "watched")
    seen: list[int] = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    post_delete.connect(receiver, sender=Task)
    try:
        assert delete_claimed("default", "watched", ids) == 2
    finally:
        post_delete.disconnect(receiver, sender=Task)
    assert sorted(seen) == sorted(ids)


def rows() -> tuple[list[str], list[tuple[object, ...]]]:
    fixtures.add(1, 2, verbose_name="first", priority=3, queue="q")
    fixtures.add(3, 4, creator=Task.objects.first())
    attnames = [field.attname for field in Task._meta.concrete_fields]
    return attnames, list(Task.objects.order_by("pk").values_list(*attnames))


def test_rows_become_tasks_as_from_db_makes_them():
    attnames, values = rows()
    fast = tasks_from_db("default", attnames, values)
    for task, row in zip(fast, values, strict=True):
        expected = Task.from_db("default", attnames, row)
        assert {name: getattr(task, name) for name in attnames} == {
            name: getattr(expected, name) for name in attnames
        }
        assert (task._state.adding, task._state.db) == (False, "default")
    assert fast[1].creator == Task.objects.order_by("pk").first()
    fast[0].verbose_name = "changed"
    fast[0].save()  # an UPDATE of the loaded row, not a second row
    assert Task.objects.count() == 2
    assert Task.objects.get(pk=fast[0].pk).verbose_name == "changed"


def test_init_receivers_get_real_instances():
    attnames, values = rows()
    seen: list[Task] = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=Task)
    try:
        tasks = tasks_from_db("default", attnames, values)
    finally:
        post_init.disconnect(receiver, sender=Task)
    assert seen == tasks and len(seen) == 2
