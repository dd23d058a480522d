"""Workflows: chains, groups with ``then`` and ``on_failure``, nesting, the
handle, and the transaction they are started in; each shape run by a real
worker process on the test database."""

from __future__ import annotations

import pytest
from django.db import transaction

from background_task import chain, get_workflow, group
from background_task.models import CompletedTask, Task, Workflow, WorkflowNode
from tests.conftest import drain
from tests.testapp import tasks as fixtures
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

add, total, fail, handler = (
    fixtures.wf_add,
    fixtures.wf_sum,
    fixtures.wf_fail,
    fixtures.wf_failure_handler,
)


def _keys(name: str) -> list[str]:
    return sorted(Execution.objects.filter(task_name=name).values_list("key", flat=True))


def _run(start_worker) -> None:
    code, output = start_worker("--burst", "--sleep", "0.1").wait(120)
    assert code == 0, output


def test_a_chain_passes_each_result_on(start_worker):
    workflow = chain(add.s(1, 2), add.s(3), add.si(100, 1), add.s(4)).start()
    assert workflow.status == "started" and Task.objects.count() == 1  # one step at a time
    _run(start_worker)
    workflow.refresh()
    assert workflow.status == "done" and workflow.results == 105
    assert _keys("wf_add") == ["1+2", "100+1", "101+4", "3+3"]
    assert [task.result for task in workflow.tasks()] == [3, 6, 101, 105]


def test_a_step_that_fails_ends_the_chain_and_cancels_the_rest(start_worker):
    workflow = chain(add.si(1, 1), fail.si(2), add.si(3, 3)).start()
    _run(start_worker)
    workflow.refresh()
    assert workflow.status == "failed" and workflow.results is None
    assert _keys("wf_add") == ["1+1"] and _keys("wf_fail") == ["2"]
    states = list(
        workflow.nodes.filter(kind="task").order_by("id").values_list("status", flat=True)
    )
    assert states == ["done", "failed", "cancelled"]


def test_a_group_runs_its_members_then_its_callback_with_their_results(start_worker):
    workflow = group(add.si(1, 1), add.si(2, 2), add.si(3, 3), then=total.s(extra=1)).start()
    assert Task.objects.count() == 3  # all members at once
    _run(start_worker)
    workflow.refresh()
    assert workflow.status == "done" and workflow.results == 13
    assert _keys("wf_sum") == ["2,4,6"]  # once, in member order


def test_a_group_without_then_returns_its_members_results(start_worker):
    workflow = group(add.si(5, 5), add.si(1, 2)).start()
    _run(start_worker)
    assert workflow.refresh().results == [10, 3]


def test_a_failed_member_runs_on_failure_once_and_never_then(start_worker):
    workflow = group(
        add.si(1, 1), fail.si(7), fail.si(8), then=total.s(), on_failure=handler.s()
    ).start()
    _run(start_worker)
    workflow.refresh()
    assert workflow.status == "failed"
    [record] = _keys("wf_failure_handler")
    assert record.startswith("tests.testapp.tasks.wf_fail|step ")
    assert _keys("wf_sum") == []
    then = workflow.nodes.get(role="then")
    assert then.status == "cancelled"


def test_chains_and_groups_nest(start_worker):
    inner = chain(add.si(2, 2), add.s(10))  # 14
    workflow = chain(
        group(add.si(1, 1), inner),  # [2, 14]
        total.s(),  # 16
        group(add.s(1), add.s(2), then=total.s()),  # [17, 18] -> 35
    ).start()
    _run(start_worker)
    workflow.refresh()
    assert workflow.status == "done" and workflow.results == 35
    assert _keys("wf_sum") == ["17,18", "2,14"]


def test_a_workflow_started_in_a_transaction_that_rolls_back_leaves_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        chain(add.si(1, 1), add.s(1)).start()
        raise RuntimeError("rolled back")
    assert not Workflow.objects.exists() and not WorkflowNode.objects.exists()
    assert not Task.objects.exists()


def test_cancel_stops_what_has_not_started(clock):
    workflow = chain(add.si(1, 1), add.s(1), add.s(1)).start()
    workflow_id = workflow.workflow_id
    handle = get_workflow(workflow_id)
    assert handle.pk == workflow.pk
    assert handle.cancel() is True
    drain(clock)
    handle.refresh()
    assert handle.status == "cancelled"
    assert not Execution.objects.exists()
    assert CompletedTask.objects.get().status == "cancelled"
    assert set(handle.nodes.values_list("status", flat=True)) == {"cancelled"}
    assert handle.cancel() is False  # finished already


def test_wait_returns_the_finished_workflow(start_worker):
    workflow = chain(add.si(2, 3), add.s(5)).start()
    worker = start_worker("--sleep", "0.1")
    assert workflow.wait(timeout=60).results == 10
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2s"):
        chain(fixtures.sleep_for.si(5)).start().wait(timeout=0.2)
    worker.kill()


def test_bad_workflows_are_refused_with_what_is_wrong():
    with pytest.raises(TypeError, match=r"did you call the task instead of \.s\(\)"):
        chain(add.si(1, 1), add(1, 1))
    with pytest.raises(ValueError, match="at least one step"):
        chain()
    with pytest.raises(TypeError, match="Unknown step option"):
        add.si(1, 1).set(color="red")
    with pytest.raises(TypeError, match="unique tasks cannot be steps"):
        fixtures.unique_record.si("x")
    with pytest.raises(TypeError, match="JSON"):
        add.si(object(), 1)
    assert not Workflow.objects.exists()


def test_step_options_apply_to_the_queued_task():
    workflow = chain(add.si(1, 1, queue="fast", priority=7), add.s(1).set(timeout=30)).start()
    first = Task.objects.get()
    assert (first.queue, first.priority, first.step_id is not None) == ("fast", 7, True)
    assert workflow.nodes.get(position=1).options["timeout"] == 30


def test_the_admin_draws_the_steps_and_the_endpoints_report_them(
    start_worker, admin_client, settings
):
    workflow = group(add.si(1, 1), fail.si(2), then=total.s(), on_failure=handler.s()).start()
    _run(start_worker)
    page = admin_client.get(
        f"/admin/background_task/workflow/{workflow.pk}/change/"
    ).content.decode()
    assert '<svg class="bgtask-workflow"' in page
    assert page.count('class="bgtask-step bgtask-done"') == 2  # add and the handler
    assert 'class="bgtask-step bgtask-failed"' in page
    assert 'class="bgtask-step bgtask-cancelled"' in page  # then
    assert "on failure:" in page
    listing = admin_client.get("/admin/background_task/workflow/").content.decode()
    assert workflow.workflow_id in listing
    answer = admin_client.get(f"/tasks/workflows/{workflow.workflow_id}/").json()
    assert answer["status"] == "failed" and len(answer["steps"]) == 5
    assert {step["role"] for step in answer["steps"]} == {"member", "then", "on_failure"}
    assert admin_client.get("/tasks/workflows/nope/").status_code == 404
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("task_status", stdout=out)
    assert "Workflows: 0 running; in the last hour 0 done, 1 failed, 0 cancelled" in out.getvalue()


def test_a_large_group_is_drawn_with_its_first_members_and_a_count():
    from background_task.web.workflow_chart import MEMBERS_SHOWN, workflow_svg

    workflow = group(*(add.si(n, n) for n in range(40))).start()
    svg = workflow_svg(list(workflow.nodes.all()))
    assert svg.count("bgtask-step") == MEMBERS_SHOWN
    assert f"+{40 - MEMBERS_SHOWN} more: {40 - MEMBERS_SHOWN} started" in svg


def test_eager_mode_runs_the_steps_as_they_are_queued():
    from background_task.testing import run_immediately

    with run_immediately():
        workflow = chain(group(add.si(1, 2), add.si(3, 4)), total.s(extra=1)).start()
    assert workflow.refresh().status == "done" and workflow.results == 11
    assert not Task.objects.exists()


def test_async_steps_run_on_the_workers_event_loop(start_worker):
    workflow = chain(add.si(1, 1), fixtures.async_record.si("in a chain"), add.si(2, 2)).start()
    _run(start_worker)
    workflow.refresh()
    assert workflow.status == "done" and workflow.results == 4
    assert _keys("async_record") == ["in a chain"]
