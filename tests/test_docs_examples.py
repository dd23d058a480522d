"""Every Python example in docs/ and the README runs.

Each page's ```python blocks run in order in one namespace (a later block
may use what an earlier one defined), in eager mode, so queued tasks run at
once as a worker would run them. What an example takes for granted (a
user, an order model, the project's other tasks) comes from the page's
setup below: stand-ins that are deliberately small.

- A block of only UPPERCASE assignments is a settings example: it runs,
  and with those settings the package's system checks must pass.
- A ``test_*`` function an example defines is called, with ``mailoutbox``.
- A comment line ``# (a worker runs it here)`` in an example drains the
  queue with a real worker loop at that point.
- A block preceded by ``<!-- not run: reason -->`` is skipped (signature
  listings and other libraries' APIs); the reason is required.
"""

from __future__ import annotations

import ast
import contextlib
import http.server
import importlib
import inspect
import pathlib
import re
import sys
import textwrap
import threading
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import django
import pytest
from django.contrib import admin
from django.core import mail
from django.test import override_settings

from background_task.api.registry import tasks
from background_task.checks import check_settings
from background_task.testing import run_immediately
from tests.conftest import ROOT

PAGES = [*sorted(pathlib.Path(ROOT, "docs").glob("*.md")), pathlib.Path(ROOT, "README.md")]
FENCE = re.compile(
    r"^(?P<indent>[ ]*)(?:<!-- (?P<marker>.*?) -->\n(?P=indent))?```python\n(?P<code>.*?)^(?P=indent)```",
    re.M | re.S,
)
WORKER_RUNS = "# (a worker runs it here)"


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    code: str
    skip_reason: str | None


def examples(path: pathlib.Path) -> list[Example]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        marker = match["marker"]
        reason = None
        if marker is not None:
            assert marker.startswith("not run: ") and len(marker) > 12, (
                f"{path.name}: unknown example marker <!-- {marker} -->"
            )
            reason = marker.removeprefix("not run: ")
        line = text.count("\n", 0, match.start()) + 1
        found.append(Example(path.name, line, textwrap.dedent(match["code"]), reason))
    return found


def is_settings(code: str) -> bool:
    body = ast.parse(code).body
    return bool(body) and all(
        isinstance(node, ast.Assign)
        and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
        for node in body
    )


# -- what the examples take for granted ---------------------------------------------

COMMON = """
from datetime import datetime as _datetime, timedelta as _timedelta, timezone as _tz
from django.contrib.auth.models import User as _User
from background_task import background as _background

user = _User.objects.create_user("ada", "ada@example.com", "pw")
"""

#: Pages whose examples show what waits in the queue: not run in eager mode
#: (a worker runs the tasks at ``# (a worker runs it here)``).
QUEUED_PAGES = {"flow-control.md"}

SETUP = {
    "README.md": """
from django.contrib.auth.models import User  # the README's example leaves its imports out
end = _datetime.now(_tz.utc) + _timedelta(days=3)
""",
    "api.md": """
@_background
def send_invoice(invoice_id, copy_to=None): ...

invoices = [1, 2]
task_id = send_invoice(0).task_id
rows = [(3,), (4,)]
from background_task.tasks import TaskSchedule
value = 60
schedule, other = TaskSchedule(priority=1), TaskSchedule(run_at=5, action=TaskSchedule.RESCHEDULE_EXISTING)

@_background(name="app.tasks.f")
def f(*args, **kwargs): return "f ran"

args, kwargs = [1], {"k": 2}
from background_task.testing import run_immediately
with run_immediately(False):
    task = f(1, schedule=3600)  # stored, not due: run_next_task leaves it to run_task
""",
    "async.md": """
class Order:
    pk = 42
    webhook_url = "https://example.com/hook"
    def charge(self): self.charged = True

class Orders:
    async def aget(self, pk): return Order()
    def select_for_update(self): return self
    def get(self, pk): return Order()

Order.objects = Orders()
async def post_webhook(url, payload): return 200
""",
    "django-tasks.md": "",
    "from-celery.md": """
pushed = []
class UpstreamBusy(Exception): ...
def push(account_id): pushed.append(account_id)
""",
    "from-django-q.md": """
@_background(name="reports.tasks.build")
def build(year, month): return {"year": year, "month": month}
""",
    "installation.md": """
import pathlib, tempfile
BASE_DIR = pathlib.Path(tempfile.gettempdir())
""",
    "results.md": """
@_background(name="reports.tasks.build_report")
def build_report_by_name(month, **options): return month

task_id = build_report_by_name("2026-09").task_id

import sys, types
permissions = types.ModuleType("myapp.permissions")
permissions.logged_in = lambda request: request.user.is_authenticated
permissions.owns_task = lambda request, task: False
sys.modules.setdefault("myapp", types.ModuleType("myapp"))
sys.modules["myapp.permissions"] = permissions
""",
    "scheduling.md": """
@_background(name="reports.tasks.send_digest")
def send_digest(): ...

@_background(name="reports.tasks.export")
def export(kind): ...

@_background(name="ops.tasks.ping")
def ping(): ...

@_background
def send_invoice(customer_id): ...

customer = user
first_of_month = _datetime(2027, 1, 1, 9, tzinfo=_tz.utc)
""",
    "testing.md": """
import sys, types
from django.core.mail import send_mail

shop_tasks = types.ModuleType("shop.tasks")

@_background(name="shop.tasks.send_invoice")
def send_invoice(invoice_id):
    send_mail(f"Invoice {invoice_id}", "Attached.", "shop@example.com", ["ada@example.com"])

shop_tasks.send_invoice = send_invoice
sys.modules.setdefault("shop", types.ModuleType("shop"))
sys.modules["shop.tasks"] = shop_tasks
""",
    "tutorial.md": """
class Customer:
    def email_user(self, subject, body): self.sent = (subject, body)

class Order:
    pk = 7
    customer = Customer()
    total_cents = 1999
    def receipt_text(self): return "1 x tea, 19.99"

class Orders:
    def get(self, pk): return Order()

Order.objects = Orders()
order = Order()
""",
}

TEARDOWN = {
    "admin.md": "from background_task.admin import TaskAdmin\nadmin.site.register(Task, TaskAdmin)",
}


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated_registry() -> Iterator[None]:
    """Tasks and schedules the examples declare vanish afterwards."""
    # The app's own tasks module registers the built-in tasks when it is first
    # imported (by discovery, once per process): import it before the snapshot,
    # so that restoring the registry never drops them.
    importlib.import_module("background_task.tasks")
    saved_tasks, saved_schedules = dict(tasks._tasks), dict(tasks._schedules)
    saved_modules = set(sys.modules)
    yield
    tasks._tasks.clear()
    tasks._tasks.update(saved_tasks)
    tasks._schedules.clear()
    tasks._schedules.update(saved_schedules)
    for name in set(sys.modules) - saved_modules:
        if name.split(".")[0] in ("myapp", "shop") or name.startswith("docs_examples_"):
            del sys.modules[name]


def drain() -> None:
    from background_task.runtime.worker import Worker

    backends: list[str] = []
    if django.VERSION >= (6, 0):
        from background_task.backends import serving

        backends = serving()
    worker = Worker(sleep=0.01, backends=backends)
    while worker.step():
        pass


def run_settings(example: Example, namespace: dict[str, object]) -> None:
    values: dict[str, object] = {}
    exec(compile(example.code, f"{example.page}:{example.line}", "exec"), namespace, values)
    ours = {k: v for k, v in values.items() if k.startswith("BACKGROUND_TASK_")}
    if "TASKS" in values and django.VERSION >= (6, 0):
        ours["TASKS"] = values["TASKS"]
    if "DATABASES" in values:
        # Checked against the example's aliases, never connected to here.
        ours["DATABASES"] = values["DATABASES"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        errors = settings_errors(ours)
    assert not errors, (
        f"{example.page}:{example.line}: the example's settings fail checks: {errors}"
    )


def settings_errors(ours: dict[str, object]) -> list[str]:
    with override_settings(**ours):
        errors = [str(e) for e in check_settings() if e.is_serious()]
        if "TASKS" in ours:
            from django.tasks import task_backends

            for alias in ours["TASKS"]:  # type: ignore[attr-defined]
                errors += [str(e) for e in task_backends[alias].check() if e.is_serious()]
    return errors


def run_code(example: Example, namespace: dict[str, object]) -> None:
    pieces = example.code.split(WORKER_RUNS)
    for index, piece in enumerate(pieces):
        if index:
            drain()
        before = set(namespace)
        exec(compile(piece, f"{example.page}:{example.line}", "exec"), namespace)
        for name in sorted(set(namespace) - before):
            function = namespace[name]
            if name.startswith("test_") and callable(function):
                mail.outbox = []
                fixtures = {"mailoutbox": mail.outbox}
                wanted = inspect.signature(function).parameters
                function(**{key: value for key, value in fixtures.items() if key in wanted})


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
@pytest.mark.django_db(transaction=True)
def test_examples_of(page: pathlib.Path, isolated_registry) -> None:
    found = examples(page)
    if not found:
        pytest.skip(f"{page.name} has no Python examples")
    if page.name == "django-tasks.md" and django.VERSION < (6, 0):
        pytest.skip("django.tasks examples need Django 6.0 (run on the Django 6 pass)")
    if page.name == "monitoring.md":
        # Its examples use the optional integrations (the main pass installs them).
        pytest.importorskip("prometheus_client")
        pytest.importorskip("opentelemetry.sdk")
    # A real module, so that a worker can import the examples' tasks by path.
    module = types.ModuleType(f"docs_examples_{page.stem.replace('-', '_')}")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    with local_server() as url, run_immediately(page.name not in QUEUED_PAGES):
        exec(COMMON + SETUP.get(page.name, ""), namespace)
        try:
            for example in found:
                if example.skip_reason:
                    continue
                code = example.code.replace("https://example.com", url)
                example = Example(example.page, example.line, code, None)
                if is_settings(code):
                    run_settings(example, namespace)
                else:
                    run_code(example, namespace)
        finally:
            if page.name in TEARDOWN:
                exec(TEARDOWN[page.name], {"admin": admin, **_models()})


def _models() -> dict[str, object]:
    from background_task.models import Task

    return {"Task": Task}


def test_every_skipped_example_says_why() -> None:
    skipped = [e for page in PAGES for e in examples(page) if e.skip_reason is not None]
    assert all(len(e.skip_reason or "") > 3 for e in skipped)
    # Skipping stays the exception: signature listings and other libraries' code
    # (OpenTelemetry's process-wide provider, say).
    assert len(skipped) <= 10, [f"{e.page}:{e.line}" for e in skipped]


def test_examples_are_found_in_lists_too() -> None:
    api = {e.code.split("\n")[0] for e in examples(pathlib.Path(ROOT, "docs", "api.md"))}
    assert "class Money:" in api  # an example indented under a list item
