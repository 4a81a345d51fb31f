"""What one hop to a worker thread costs the process, under uvloop: anyio's
`to_thread.run_sync` (what the file store uses) against asyncio's
`run_in_executor`, each for a function that does nothing.

    .venv/bin/python bench/thread_hop.py
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import anyio.to_thread
import uvloop

CALLS = 20_000


def nothing() -> None:
    return None


async def measure() -> None:
    limiter = anyio.CapacityLimiter(32)
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(32)

    async def anyio_hop() -> None:
        await anyio.to_thread.run_sync(nothing, limiter=limiter)

    async def executor_hop() -> None:
        await loop.run_in_executor(executor, nothing)

    for _ in range(2):  # the first round warms up threads and caches
        for name, hop in (("anyio to_thread", anyio_hop), ("run_in_executor", executor_hop)):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(CALLS):
                await hop()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name:16} {wall / CALLS * 1e6:5.1f} us wall, {cpu / CALLS * 1e6:5.1f} us CPU per hop")
    executor.shutdown()


if __name__ == "__main__":
    uvloop.run(measure())
