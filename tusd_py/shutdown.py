"""Hear SIGTERM/SIGINT before uvicorn's graceful shutdown starts waiting.

uvicorn tells the app about shutdown (lifespan) only after every request has
ended, but a request streaming a large body would hold shutdown for as long
as the client keeps sending. Like tusd, we stop running bodies at once
(503 ERR_SERVER_SHUTDOWN, bytes kept) so the server exits promptly. The
handler is chained in front of whatever was installed (uvicorn's own).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_shutdown_signal(callback: Callable[[], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; nothing to chain
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SHUTDOWN_SIGNALS}

    def handle(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained = previous[sig]
        if callable(chained):
            chained(sig, frame)

    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
