"""Run a chaos-suite step against the database the environment names.

The database-restart scenario points DB_PORT/DB_NAME at a server the test
started itself; pytest-django allows the test no connection to it, so the
test runs its enqueue and its final checks through this script:

    python tests/chaos_remote.py enqueue TOTAL SEED
    python tests/chaos_remote.py check TOTAL < {"killed_at": {...}, "outages": [...]}
    python tests/chaos_remote.py enqueue-workflows COUNT
    python tests/chaos_remote.py check-workflows COUNT
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime

import django

django.setup()

from tests import chaos, chaos_workflows  # noqa: E402


def main() -> None:
    command, total = sys.argv[1], int(sys.argv[2])
    if command == "enqueue":
        chaos.enqueue(total, random.Random(int(sys.argv[3])))
        return
    if command == "enqueue-workflows":
        chaos_workflows.enqueue(total)
        return
    if command == "check-workflows":
        print(json.dumps(chaos_workflows.check(total)))
        return
    state = json.load(sys.stdin)
    killed_at = {int(pid): datetime.fromisoformat(at) for pid, at in state["killed_at"].items()}
    outages = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in state["outages"]]
    print(json.dumps(chaos.check(total, killed_at, outages=outages)))


if __name__ == "__main__":
    main()
