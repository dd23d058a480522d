"""What a web process does through the pooler, for tests/test_pooler.py.

``python tests/pooled_client.py enqueue``: single calls, a bulk call (COPY),
unique calls, and the admin's pages (as a superuser); prints the queued task
ids as JSON. ``python tests/pooled_client.py ping``: one task; prints its id.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import django

django.setup()

from tests import admin_pages  # noqa: E402
from tests.testapp import tasks  # noqa: E402


def enqueue() -> list[str]:
    ids = [tasks.record(f"single-{index}").task_id for index in range(30)]
    ids += [row.task_id for row in tasks.record.bulk([(f"bulk-{i}",) for i in range(200)])]
    first = tasks.unique_record("pooled")
    assert tasks.unique_record("pooled").deduplicated
    ids.append(first.task_id)
    admin_pages.visit(admin_pages.superuser_client("pooled-admin"))
    return ids


if __name__ == "__main__":
    if sys.argv[1] == "enqueue":
        print(json.dumps(enqueue()))
    else:
        print(json.dumps([tasks.record("ping").task_id]))
