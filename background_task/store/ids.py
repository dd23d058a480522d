"""Ids: public task ids (time-ordered UUID strings, made fast enough for every
queued task) and the ids of the processes that claim tasks."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

from background_task.core.conf import host_name


def new_task_id() -> str:
    """Return a fresh public task id: a UUID string (36 characters) in the
    layout of RFC 9562's version 7.

    The first 48 bits are the Unix time in milliseconds and 74 of the rest
    are random. Ids made later sort later, so each new row's entry in the
    unique index on ``task_id`` lands at the end of that index, beside the
    previous one. With random (version 4) ids every row went to a random
    page of it: beside a history of 10,000,000 rows, draining tasks
    spent a good share of its time reading and rewriting pages of that index.
    """
    return _task_id(_milliseconds(), os.urandom(10).hex())


def new_task_ids(count: int) -> Iterator[str]:
    """``count`` fresh task ids, as :func:`new_task_id` makes them, from one
    read of the system's randomness per 1,024 ids (a system call per id was
    a tenth of a bulk enqueue's time)."""
    while count > 0:
        chunk = min(count, 1024)
        text = os.urandom(10 * chunk).hex()
        stamp = _milliseconds()
        for start in range(0, 20 * chunk, 20):
            yield _task_id(stamp, text[start : start + 20])
        count -= chunk


def _milliseconds() -> str:
    """The Unix time in milliseconds as 12 hex digits."""
    return f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}"


def _task_id(stamp: str, text: str) -> str:
    """The UUID string of a 12-digit time ``stamp`` and 20 random hex digits
    (of which the variant digit keeps two bits)."""
    variant = _VARIANT_DIGITS[int(text[3], 16)]
    return f"{stamp[:8]}-{stamp[8:]}-7{text[:3]}-{variant}{text[4:7]}-{text[8:]}"


#: A hex digit's low two bits under the RFC 4122 variant bits ``10``: 8, 9, a or b.
_VARIANT_DIGITS = "89ab" * 4


def make_worker_id() -> str:
    """``host:pid:random``, unique across hosts and within 64 characters: what
    a claiming process writes into ``locked_by``."""
    return f"{host_name()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
