"""uvicorn's HTTP protocol with a deadline for request headers.

uvicorn has no header read timeout: a client that trickles its request line
and headers a byte at a time (slowloris) holds a connection forever. Like
tusd's ReadHeaderTimeout (`-network-timeout`), a connection whose headers are
not complete this long after it opened (or after the previous request ended)
is closed. Bodies have their own idle timeout in body.py.

Two more deadlines, also tusd's: after a response, a connection on which no
new request begins within the timeout is closed (uvicorn's keep-alive timer is
cancelled by any byte received, so a client trickling the unread rest of a
body would otherwise hold the connection with no timer at all); and a
response of which nothing is taken by the client for the timeout (a client
that stopped reading) is aborted.

And three savings. A request the app can answer without waiting (a HEAD of an
upload nobody holds: `TusApp.answer_now`) is answered here, as the parser
completes its headers, with no task and no ASGI cycle: with the app's kept
answers, a HEAD's server CPU went from ~110 to ~30 us (spec_notes/serving.md).
uvicorn appends every body chunk to a bytearray, then copies that into bytes
for the app: two copies of each body byte. A chunk that finds the buffer empty
(nearly all of them) is kept as it is instead; `bytes()` of a bytes object is
the object itself, so it reaches the app uncopied. And a large body can be
detached: the app reads its rest from the socket itself (socket_body.py), while
this connection skips it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct
import termios

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from .config import HEADER_TIMEOUT_VARIABLE, MAX_HEADER_SIZE_VARIABLE
from .socket_body import SOCKET_BODY_EXTENSION, SOCKET_BODY_MIN, SocketBody

# httptools buffers a header until it ends, with no limit of its own: a connection that
# streams one endless header would grow without bound until the header deadline. The
# app answers 431 past -max-header-size once headers are complete; here the parser is
# cut off a little later (slack: the request line, and body bytes that share a read
# with the end of a request's headers).
HEADER_SLACK = 256 * 1024


CHUNKED = -1  # _body_length of a chunked body
# A request with at most this much body may be answered at once when all of it came with its
# headers (a small creation: TusApp.answer_now).
ANSWER_NOW_BODY = 64 * 1024


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length (httptools checked it), 0 for none, or CHUNKED."""
    length = 0
    for name, value in headers:
        if name == b"content-length":
            length = int(value) if value.isdigit() else 0
        elif name == b"transfer-encoding":
            return CHUNKED
    return length


def _render(status: int, default_headers: list[tuple[bytes, bytes]], lines: bytes) -> bytes:
    """A response without a body, as uvicorn would send it: uvicorn's own headers (date),
    then the app's header lines (asgi.header_lines)."""
    defaults = b"".join([name + b": " + value + b"\r\n" for name, value in default_headers])
    return b"".join((STATUS_LINE[status], defaults, lines, b"content-length: 0\r\n\r\n"))


class TimedHttpToolsProtocol(HttpToolsProtocol):
    # The header and idle deadlines: the connection is closed at `_deadline` (None: no
    # deadline, a request is being served). One timer per connection, armed for the
    # deadline it saw and re-armed on firing if the deadline moved on: a request moves
    # it twice, and arming and cancelling timers for each cost ~4 us of a HEAD.
    _deadline: float | None = None
    _watchdog: asyncio.TimerHandle | None = None
    _reading_headers = False
    _header_bytes = 0
    _write_timer: asyncio.TimerHandle | None = None
    _body_length = 0  # the current request's Content-Length (0: none), or CHUNKED
    _body_seen = 0  # body bytes of the current request the parser has handed over
    body_left = 0  # bytes of a detached body still on the socket (socket_body.py)
    _answering = False  # inside an answer given here (_answer_now)
    # A request with a small body whose task waits for the end of the read that carried its
    # headers: if its whole body came in it too, it may be answered at once.
    _deferred: tuple[RequestResponseCycle, object] | None = None
    _parsing = False  # inside data_received's parsing: a request started now may be deferred

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Set by the CLI before the server starts: read once per connection.
        self._timeout = float(os.environ.get(HEADER_TIMEOUT_VARIABLE, "60"))
        self._header_limit = int(os.environ.get(MAX_HEADER_SIZE_VARIABLE, str(64 * 1024))) + HEADER_SLACK
        self._expect_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_seen = 0
        self._expect_headers()

    def on_headers_complete(self) -> None:
        self._headers_read()
        self._body_length = _content_length(self.headers)
        super().on_headers_complete()  # starts the request (_start_asgi_task)
        if self.scheme == "http" and self.cycle is not None and self._body_length >= SOCKET_BODY_MIN:
            # Not over TLS: the socket carries ciphertext there.
            extensions: dict[str, object] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
            extensions[SOCKET_BODY_EXTENSION] = SocketBody(self, self.cycle)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: object) -> None:
        if 0 < self._body_length <= ANSWER_NOW_BODY and cycle.scope["method"] == "POST" and self._may_answer(cycle):
            if self._parsing:
                # Maybe the whole body is in the bytes being parsed: data_received() decides.
                self._deferred = cycle, app
                return
            # Started after the read that carried it (pipelined): its body is all here or not.
            if self._answer_whole(cycle, app):
                return
        elif not self._body_length and self._answer_now(cycle, app, None):
            return
        super()._start_asgi_task(cycle, app)  # type: ignore[arg-type]

    def _start_deferred(self) -> None:
        """After a read: answer a deferred request at once if its whole body came, else
        start it as usual (the rest of its body comes as usual)."""
        assert self._deferred is not None
        (cycle, app), self._deferred = self._deferred, None
        if not self._answer_whole(cycle, app):
            super()._start_asgi_task(cycle, app)  # type: ignore[arg-type]

    def _answer_whole(self, cycle: RequestResponseCycle, app: object) -> bool:
        """Answer at once a request whose whole body has come (none of it is still to come)."""
        return (
            not cycle.more_body and not self.transport.is_closing() and self._answer_now(cycle, app, bytes(cycle.body))
        )

    def _may_answer(self, cycle: RequestResponseCycle) -> bool:
        return (
            not self._answering  # a request queued behind this answer: not from inside it
            and cycle is self.cycle  # a pipelined request, started late: its own task
            and cycle.keep_alive  # closing after the response: uvicorn's path does it
            and not self.flow.write_paused  # a client that does not read gets the usual back-pressure
        )

    def _answer_now(self, cycle: RequestResponseCycle, app: object, body: bytes | None) -> bool:
        answer_now = getattr(app, "answer_now", None)  # TusApp (not uvicorn's 503 app)
        if answer_now is None or not self._may_answer(cycle):
            return False
        try:
            answer = answer_now(cycle.scope, body)
        except Exception:
            self.logger.exception("answering %s %s at once failed", cycle.scope["method"], cycle.scope["path"])
            return False  # the usual path serves it
        if answer is None:
            return False
        response = _render(answer[0], self.server_state.default_headers, answer[1])
        cycle.response_started = cycle.response_complete = True
        cycle.more_body = False
        self.transport.write(response)
        self._answering = True
        try:
            self.on_response_complete()
        finally:
            self._answering = False
        return True

    # --- socket_body.BodyConnection ---

    def detach_body(self, cycle: object, at_most: int) -> socket.socket | None:
        if (
            cycle is not self.cycle  # a request pipelined behind it was parsed: its body is all here
            or self.parser is None  # connection lost
            or self.cycle.body  # messages the app has not taken yet come first
            or not self.cycle.more_body
            or self.cycle.response_complete
            or self.transport.is_closing()
        ):
            return None
        left = self._body_length - self._body_seen
        if not SOCKET_BODY_MIN <= left <= at_most:
            return None
        raw = self.transport.get_extra_info("socket")
        try:
            duplicate = os.dup(raw.fileno())
        except (AttributeError, OSError):
            return None
        try:
            sock = socket.socket(fileno=duplicate)
            sock.setblocking(False)
        except OSError:
            os.close(duplicate)
            return None
        self.flow.pause_reading()  # from here on only the app reads this socket, until the response
        self.parser = httptools.HttpRequestParser(self)  # positioned after this body
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn does
        self.body_left = left
        return sock

    def body_received(self, count: int) -> None:
        assert self.flow.read_paused and 0 < count <= self.body_left
        self.body_left -= count
        if not self.body_left and not self.cycle.response_complete:
            self.cycle.more_body = False  # as on_message_complete would
            self.cycle.message_event.set()

    def data_received(self, data: bytes) -> None:
        if self.body_left:  # the unread rest of a detached body: dropped
            self._unset_keepalive_if_required()
            if len(data) <= self.body_left:
                self.body_left -= len(data)
                return
            data, self.body_left = data[self.body_left :], 0
        self._parsing = True
        try:
            super().data_received(data)
        finally:
            self._parsing = False
            if self._deferred is not None:  # never left waiting, whatever the parser did
                self._start_deferred()
        if self._reading_headers and not self.transport.is_closing():
            # This request's headers are still incomplete after these bytes.
            self._header_bytes += len(data)
            if self._header_bytes > self._header_limit:
                self._refuse_headers()

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        cycle = self.cycle
        if cycle.body or cycle.response_complete or self.parser.should_upgrade():
            super().on_body(body)  # appended (or dropped) by uvicorn
            return
        cycle.body = body  # type: ignore[assignment]  # bytes, handed over by receive() as they are
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a queued request already has its headers
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._set_deadline()  # for the next request to begin

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._watch_writes(self._unsent())

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._cancel_write_timer()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._set_deadline()

    def _headers_read(self) -> None:
        self._reading_headers = False
        self._deadline = None  # a request is being served: no deadline here

    def _set_deadline(self) -> None:
        self._deadline = self.loop.time() + self._timeout
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self._deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._watchdog = None
        if self._deadline is None or self.transport.is_closing():
            return  # armed again by the next deadline
        if self.loop.time() >= self._deadline:
            self.transport.close()
        else:
            self._watchdog = self.loop.call_at(self._deadline, self._check_deadline)

    def _unsent(self) -> int:
        """Bytes the client has not taken yet: our buffer and the kernel's send queue."""
        unsent = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        try:
            unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        except (AttributeError, OSError, ValueError):
            pass  # not a TCP socket (unix socket, TLS wrapper...): our buffer alone
        return unsent

    def _watch_writes(self, unsent: int) -> None:
        self._write_timer = self.loop.call_later(self._timeout, self._check_writes, unsent)

    def _check_writes(self, unsent: int) -> None:
        # An idle deadline, like the body's: a client that reads, however slowly, is kept.
        self._write_timer = None
        now = self._unsent()
        if now < unsent:
            self._watch_writes(now)
        else:
            self.transport.abort()  # not close(): that would wait for the unsent bytes to drain

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _refuse_headers(self) -> None:
        self._headers_read()
        if self.cycle is None or self.cycle.response_complete:  # never inside another response
            body = b"ERR_HEADERS_TOO_LARGE: request headers are too large\n"
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\ntus-resumable: 1.0.0\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
        self.transport.close()
