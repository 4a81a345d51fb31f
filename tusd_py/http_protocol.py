"""uvicorn's HTTP protocol with a deadline for request headers.

uvicorn has no header read timeout: a client that trickles its request line
and headers a byte at a time (slowloris) holds a connection forever. Like
tusd's ReadHeaderTimeout (`-network-timeout`), a connection whose headers are
not complete this long after it opened (or after the previous request ended)
is closed. Bodies have their own idle timeout in body.py.
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import HEADER_TIMEOUT_VARIABLE


class TimedHttpToolsProtocol(HttpToolsProtocol):
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        timeout = float(os.environ.get(HEADER_TIMEOUT_VARIABLE, "60"))
        self._header_timer = self.loop.call_later(timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
