"""How many event-loop turns a 16 KiB creation-with-upload spans in the app alone
(no sockets, no uvicorn): a ticker task counts the turns while each request runs.
Zero means the request never suspends, so under load requests finish in the order
their tasks start and W3's latency spread is queueing alone (bench/profiles.md).

    .venv/bin/python bench/loop_turns.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections import Counter

from asgi_micro import SIZE, call


async def main(count: int) -> None:
    from tusd_py import log_format
    from tusd_py.app import create_app
    from tusd_py.config import Config

    directory = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    log_format.configure("text", True)
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115
    app = create_app(Config(upload_dir=directory))
    body = os.urandom(SIZE)
    creation = {"Tus-Resumable": "1.0.0", "Upload-Length": str(SIZE),
                "Content-Type": "application/offset+octet-stream", "Content-Length": str(SIZE)}  # fmt: skip
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    spans: Counter[int] = Counter()
    try:
        async with app.lifespan_context():
            ticking = asyncio.create_task(ticker())
            for _ in range(count):
                before = turns
                status, _ = await call(app, "POST", "/files/", creation, body)
                assert status == 201, status
                spans[turns - before] += 1
            ticking.cancel()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("loop turns per creation:", dict(sorted(spans.items())))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
