"""One process of the unique-task race: ``python tests/unique_race.py THREADS START``.

Its threads all call ``unique_record("race")`` at the wall-clock instant
START and print, per call, the id of the row it got and whether that row was
a waiting twin (``id:1``) or stored by the call (``id:0``).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django.db import connection  # noqa: E402

from tests.testapp.tasks import unique_record  # noqa: E402


def main() -> None:
    threads, start_at = int(sys.argv[1]), float(sys.argv[2])
    got: list[str] = []

    def call() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            task = unique_record("race")
            got.append(f"{task.pk}:{int(task.deduplicated)}")
        finally:
            connection.close()

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(" ".join(got))


if __name__ == "__main__":
    main()
