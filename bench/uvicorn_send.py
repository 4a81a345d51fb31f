"""The Python part of uvicorn's response path for a HEAD: microseconds per request cycle
created and its two `send` calls (status line and headers, then the empty body), with a
transport that writes nowhere. What py-spy shows under `RequestResponseCycle.send` in W4
beyond this is the kernel's `send` on loopback (bench/profiles.md, stop 15).

    .venv/bin/python bench/uvicorn_send.py
"""

from __future__ import annotations

import asyncio
import logging
import time

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

HEADERS = [
    (b"tus-resumable", b"1.0.0"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"upload-offset", b"16384"),
    (b"upload-length", b"16384"),
    (b"content-length", b"0"),
]


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def main(count: int = 20000) -> None:
    transport = NullTransport()
    started = time.perf_counter()
    for _ in range(count):
        cycle = RequestResponseCycle(
            scope={"method": "HEAD", "http_version": "1.1"},  # type: ignore[typeddict-item]
            transport=transport,  # type: ignore[arg-type]
            flow=FlowControl(transport),  # type: ignore[arg-type]
            logger=logging.getLogger("bench"),
            access_logger=logging.getLogger("bench.access"),
            access_log=False,
            default_headers=[],
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=True,
            on_response=lambda: None,
        )
        await cycle.send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await cycle.send({"type": "http.response.body", "body": b""})
    print(f"us_per_head_response={(time.perf_counter() - started) / count * 1e6:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
