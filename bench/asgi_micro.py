"""In-process cost of one request in the app alone (no sockets, no uvicorn):
microseconds per 16 KiB creation-with-upload through the ASGI path and answered at
once (`TusApp.answer_now`, the path the HTTP protocol takes when the body came with
the headers), per HEAD, and per HEAD answered at once (loaded, then kept), with the
default configuration and the request log written to /dev/null (as the CLI would,
to a file). Deterministic enough to compare two trees back to back:

    .venv/bin/python bench/asgi_micro.py                      # this tree
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/asgi_micro.py
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

SIZE = 16 * 1024
CREATION = {"Tus-Resumable": "1.0.0", "Upload-Length": str(SIZE),
            "Content-Type": "application/offset+octet-stream", "Content-Length": str(SIZE)}  # fmt: skip


def scope(method: str, path: str, headers: dict[str, str]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def call(app, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a client that waits for the response
        raise AssertionError

    response: dict = {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            response["status"] = message["status"]
            response["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    await app(scope(method, path, headers), receive, send)
    return response["status"], response["headers"]


@asynccontextmanager
async def running_app() -> AsyncIterator[object]:
    """The default app, started, on a fresh upload directory (on /dev/shm when there is
    one), its request log going to /dev/null; the directory is removed afterwards."""
    from tusd_py import log_format
    from tusd_py.app import create_app
    from tusd_py.config import Config

    directory = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    log_format.configure("text", True)
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115
    app = create_app(Config(upload_dir=directory))
    try:
        async with app.lifespan_context():
            yield app
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def per_request_us(started: float, count: int) -> float:
    return (time.perf_counter() - started) / count * 1e6


async def main(rounds: int, count: int) -> None:
    body = os.urandom(SIZE)
    async with running_app() as app:
        for _ in range(rounds):
            started = time.perf_counter()
            paths = []
            for _ in range(count):
                status, headers = await call(app, "POST", "/files/", CREATION, body)
                assert status == 201, status
                paths.append(headers["location"].split("8080", 1)[1])
            create_us = per_request_us(started, count)
            started = time.perf_counter()
            for _ in range(count):
                assert app.answer_now(scope("POST", "/files/", CREATION), body) is not None
            create_now_us = per_request_us(started, count)
            started = time.perf_counter()
            for path in paths:
                status, headers = await call(app, "HEAD", path, {"Tus-Resumable": "1.0.0"})
                assert status == 200 and headers["upload-offset"] == str(SIZE), (status, headers)
            head_us = per_request_us(started, count)
            # The same HEADs answered at once (TusApp.answer_now), as the HTTP protocol
            # asks for them: first loaded (the HEADs above took each lock the usual way,
            # a new generation), then again from the kept answers.
            head_now_us = []
            for _ in range(2):
                started = time.perf_counter()
                for path in paths:
                    assert app.answer_now(scope("HEAD", path, {"Tus-Resumable": "1.0.0"})) is not None
                head_now_us.append(per_request_us(started, count))
            print(
                f"create_us={create_us:.1f} create_now_us={create_now_us:.1f} head_us={head_us:.1f} "
                f"head_now_loaded_us={head_now_us[0]:.1f} head_now_kept_us={head_now_us[1]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.rounds, args.count))
    except ImportError:
        asyncio.run(main(args.rounds, args.count))
    sys.exit(0)
