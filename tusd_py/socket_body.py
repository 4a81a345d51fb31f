"""A request body read straight from the connection's socket into the app's block.

uvicorn hands a body over as ASGI messages: uvloop reads into its buffer and
makes bytes of it, httptools makes bytes of the body part, and the app copies
those into its block. That is three copies of every byte in user space and
~0.8 s of event-loop CPU per GiB. A body taken over here goes from the kernel
into the block in one copy: W1's server CPU 0.93 -> 0.70 s, and W5's peak RSS
loses the messages in flight (bench/README.md).

The server offers a SocketBody in the request scope (SOCKET_BODY_EXTENSION)
when it can: plain HTTP/1.1 (not TLS) with a Content-Length. The app takes it
over after the first message: the connection pauses its own reading and
positions its parser after this body, and from then on the app reads at most
the body's remaining bytes, so a request pipelined behind it stays on the
socket. Body bytes the app leaves unread (an interrupted upload) are dropped
by the connection before its parser sees them, as uvicorn drops a body the
app did not read.
"""

from __future__ import annotations

import socket
from typing import Protocol

import anyio

SOCKET_BODY_EXTENSION = "tusd.socket_body"
# Less than this left after the first message: not worth a duplicate socket.
SOCKET_BODY_MIN = 64 * 1024


class BodyConnection(Protocol):
    """What the HTTP connection does for a SocketBody (http_protocol.py)."""

    @property
    def body_left(self) -> int:
        """Bytes of the taken-over body still on the socket."""
        ...

    def detach_body(self, cycle: object, at_most: int) -> socket.socket | None:
        """Stop reading, skip the rest of `cycle`'s body, and return a duplicate of
        the socket to read it from; None if this is not possible now, or if more
        than `at_most` bytes are left (or fewer than SOCKET_BODY_MIN)."""
        ...

    def body_received(self, count: int) -> None:
        """`count` bytes of the rest were read from the socket by the app."""
        ...


class SocketBody:
    def __init__(self, connection: BodyConnection, cycle: object) -> None:
        self._connection = connection
        self._cycle = cycle  # the request this body belongs to
        self._sock: socket.socket | None = None

    @property
    def taken(self) -> bool:
        """The rest of the body is read from the socket (take_over succeeded)."""
        return self._sock is not None

    @property
    def remaining(self) -> int:
        """Bytes of the body still to read, once taken over."""
        return self._connection.body_left if self._sock is not None else 0

    def take_over(self, at_most: int) -> bool:
        """Read the rest of the body from the socket from now on, if the connection
        can hand it over and it is no more than `at_most` bytes."""
        if self._sock is None:
            self._sock = self._connection.detach_body(self._cycle, at_most)
        return self._sock is not None

    async def recv_into(self, target: bytearray, start: int, end: int) -> int:
        """Read at least one and at most end - start body bytes into target[start:end].

        Raises ConnectionResetError when the client closes the connection first."""
        sock, left = self._sock, self._connection.body_left
        assert sock is not None and left > 0
        end = min(end, start + left)
        while True:
            try:
                count = sock.recv_into(memoryview(target)[start:end])
            except BlockingIOError:
                await anyio.wait_readable(sock)
                continue
            if count == 0:
                raise ConnectionResetError("the client closed the connection")
            self._connection.body_received(count)
            if not self._connection.body_left:
                self.close()
            return count

    def close(self) -> None:
        """Let go of the duplicate socket (the connection keeps its own)."""
        if self._sock is not None:
            self._sock.close()
