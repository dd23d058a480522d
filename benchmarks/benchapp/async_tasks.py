"""Async benchmark tasks, registered only in the async scenarios' workers
(``BENCH_ASYNC``; see ``tasks.py``)."""

import asyncio

from background_task import background

__all__ = ["await_2s", "await_100ms"]


@background
async def await_100ms(i: int = 0) -> None:
    """An async task that awaits 0.1 s (I/O-bound work: a webhook, an API call)."""
    await asyncio.sleep(0.1)


@background
async def await_2s(i: int = 0) -> None:
    """An async task that awaits 2 s: many of them are alive at once."""
    await asyncio.sleep(2)
