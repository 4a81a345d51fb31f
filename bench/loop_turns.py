"""How many event-loop turns a 16 KiB creation-with-upload spans in the app alone
(no sockets, no uvicorn), through the ASGI path (a creation whose body came with its
headers is answered at once instead, never yielding at all): a ticker task counts the
turns while each request runs. Zero means the request never suspends, so under load
requests finish in the order their tasks start and W3's latency spread is queueing
alone (bench/profiles.md).

    .venv/bin/python bench/loop_turns.py
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter

from asgi_micro import CREATION, SIZE, call, running_app


async def main(count: int) -> None:
    body = os.urandom(SIZE)
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    spans: Counter[int] = Counter()
    async with running_app() as app:
        ticking = asyncio.create_task(ticker())
        for _ in range(count):
            before = turns
            status, _ = await call(app, "POST", "/files/", CREATION, body)
            assert status == 201, status
            spans[turns - before] += 1
        ticking.cancel()
    print("loop turns per creation:", dict(sorted(spans.items())))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
