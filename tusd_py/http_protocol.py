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

from .config import HEADER_TIMEOUT_VARIABLE, MAX_HEADER_SIZE_VARIABLE

# httptools buffers a header until it ends, with no limit of its own: a connection that
# streams one endless header would grow without bound until the header deadline. The
# app answers 431 past -max-header-size once headers are complete; here the parser is
# cut off a little later (slack: the request line, and body bytes that share a read
# with the end of a request's headers).
HEADER_SLACK = 256 * 1024


class TimedHttpToolsProtocol(HttpToolsProtocol):
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            # This request's headers are still incomplete after these bytes.
            self._header_bytes += len(data)
            limit = int(os.environ.get(MAX_HEADER_SIZE_VARIABLE, str(64 * 1024))) + HEADER_SLACK
            if self._header_bytes > limit:
                self._refuse_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_bytes = 0
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

    def _refuse_headers(self) -> None:
        self._cancel_header_timer()
        if self.cycle is None or self.cycle.response_complete:  # never inside another response
            body = b"ERR_HEADERS_TOO_LARGE: request headers are too large\n"
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\ntus-resumable: 1.0.0\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
        self.transport.close()
