"""What a supervised worker process is running, readable by its supervisor.

The supervisor maps one small block of shared memory per child before it
forks it. The child writes its worker id into the header and, per thread,
the primary key of the task that thread runs and the moment (monotonic
clock, shared by all processes of the host) its hard time limit runs out.
Writing a slot is a couple of memory stores, so it costs the hot path
nothing measurable; the supervisor reads the slots to kill a child whose
task overran, and, after a child died, to tell the tasks it was running
from those it had only claimed.
"""

from __future__ import annotations

import itertools
import math
import mmap
import struct
import threading
from dataclasses import dataclass

OWNER_SIZE = 64  # bytes: the owner's worker id, UTF-8, NUL padded
BEGUN = OWNER_SIZE  # one byte: 1 once the child began a task
HEADER_SIZE = OWNER_SIZE + 8
PK = struct.Struct("=q")  # task pk; 0: the slot is free
DEADLINE = struct.Struct("=d")  # monotonic seconds; inf: no time limit
SLOT_SIZE = PK.size + DEADLINE.size


@dataclass(frozen=True)
class RunningTask:
    """One occupied slot, as the supervisor sees it."""

    pk: int
    deadline: float  # monotonic seconds; math.inf when the task has no time limit


class TaskSlots:
    """One slot per thread of a worker process, in memory shared across ``fork()``.

    ``extra`` slots follow the threads' for the tasks a worker runs on its
    event loop (``async def`` tasks); the worker hands those out by index.
    """

    def __init__(self, count: int, extra: int = 0) -> None:
        self.threads = max(1, count)
        self.count = self.threads + max(0, extra)
        self._memory = mmap.mmap(-1, HEADER_SIZE + self.count * SLOT_SIZE)
        for index in range(self.count):
            self._write(index, 0, math.inf)  # never a zero deadline next to a pk
        self._local = threading.local()
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    # -- the worker's side ---------------------------------------------------

    def set_owner(self, worker_id: str) -> None:
        """Record the worker id of the process that uses these slots."""
        encoded = worker_id.encode()[:OWNER_SIZE]
        self._memory[:OWNER_SIZE] = encoded.ljust(OWNER_SIZE, b"\0")

    def _index(self) -> int:
        index: int | None = getattr(self._local, "index", None)
        if index is None:
            with self._lock:
                index = next(self._numbers) % self.threads
            self._local.index = index
        return index

    def _write(self, index: int, pk: int | None, deadline: float | None) -> None:
        offset = HEADER_SIZE + index * SLOT_SIZE
        if deadline is not None:
            # Packed first, then copied in one 8-byte store: pack_into()
            # zeroes its target before it writes, and a reader catching that
            # moment would see a running task with a deadline of 0.
            self._memory[offset + PK.size : offset + SLOT_SIZE] = DEADLINE.pack(deadline)
        if pk is not None:
            self._memory[offset : offset + PK.size] = PK.pack(pk)

    @property
    def extra(self) -> range:
        """The indexes of the slots that follow the threads' ones."""
        return range(self.threads, self.count)

    def begin(self, pk: int, timeout: float | None, now: float, index: int | None = None) -> None:
        """Mark the calling thread (or slot ``index``) as running task ``pk``,
        with a limit of ``timeout`` seconds."""
        # The deadline is written before the pk: a reader that sees the pk
        # sees this task's deadline, never the previous one.
        index = self._index() if index is None else index
        self._write(index, pk, math.inf if timeout is None else now + timeout)
        self._memory[BEGUN] = 1

    def lift_deadline(self, index: int | None = None) -> None:
        """The task's code has returned: recording its outcome has no time limit."""
        self._write(self._index() if index is None else index, None, math.inf)

    def end(self, index: int | None = None) -> None:
        """Mark the calling thread (or slot ``index``) as idle."""
        index = self._index() if index is None else index
        self._write(index, 0, None)  # the pk first: a free slot is never overdue
        self._write(index, None, math.inf)

    # -- the supervisor's side -----------------------------------------------

    def owner(self) -> str | None:
        """The worker id the child wrote, or None if it never got that far."""
        raw = bytes(self._memory[:OWNER_SIZE]).rstrip(b"\0")
        return raw.decode(errors="replace") or None

    def begun(self) -> bool:
        """True once the child has begun running a task: it got through its start."""
        return self._memory[BEGUN] == 1

    def running(self) -> list[RunningTask]:
        """The tasks the child's threads are running now."""
        found = []
        for index in range(self.count):
            offset = HEADER_SIZE + index * SLOT_SIZE
            slot = self._memory[offset : offset + SLOT_SIZE]  # copied at once, then read
            (pk,) = PK.unpack_from(slot)
            (deadline,) = DEADLINE.unpack_from(slot, PK.size)
            if pk:
                found.append(RunningTask(pk, deadline))
        return found

    def overdue(self, now: float) -> RunningTask | None:
        """The running task whose time limit ran out first, if any did."""
        late = [task for task in self.running() if task.deadline <= now]
        return min(late, key=lambda task: task.deadline) if late else None

    def close(self) -> None:
        self._memory.close()
