"""Ids: public task ids (UUID4 strings, made fast enough for every queued task)
and the ids of the processes that claim tasks."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

from background_task.core.conf import host_name


def new_task_id() -> str:
    """Return a fresh public task id (a UUID4 string, 36 characters).

    What ``str(uuid.uuid4())`` returns, built from the random bytes' hex
    text without the UUID object (a third of the time; every queued task
    needs one): the version digit is 4, and the variant digit keeps two
    random bits under the RFC 4122 variant's ``10``.
    """
    return _task_id(os.urandom(16).hex())


def new_task_ids(count: int) -> Iterator[str]:
    """``count`` fresh task ids, as :func:`new_task_id` makes them, from one
    read of the system's randomness per 1,024 ids (a system call per id was
    a tenth of a bulk enqueue's time)."""
    while count > 0:
        chunk = min(count, 1024)
        text = os.urandom(16 * chunk).hex()
        for start in range(0, 32 * chunk, 32):
            yield _task_id(text[start : start + 32])
        count -= chunk


def _task_id(text: str) -> str:
    """The UUID4 string of 32 random hex digits."""
    variant = _VARIANT_DIGITS[int(text[16], 16)]
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{variant}{text[17:20]}-{text[20:]}"


#: A hex digit's low two bits under the RFC 4122 variant bits ``10``: 8, 9, a or b.
_VARIANT_DIGITS = "89ab" * 4


def make_worker_id() -> str:
    """``host:pid:random``, unique across hosts and within 64 characters: what
    a claiming process writes into ``locked_by``."""
    return f"{host_name()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
