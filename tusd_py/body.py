"""Request body reader: large blocks, a byte cap, and an idle timeout.

ASGI servers hand the body over in messages of at most ~64 KiB. Writing each
one separately would cost a thread hop per message, so the reader coalesces
them into blocks of about `block_size` bytes (a block ends with the message that
fills it), so it holds at most one block and one message.

It reads the ASGI `receive` channel itself rather than Starlette's
`request.stream()`: the message that says `more_body: false` ends the body at
once, where the stream costs two more rounds (an empty chunk, then the end),
each under its own idle timeout.

Bytes received but not yet handed out stay in `pending` when reading fails
(timeout, disconnect, cancellation by a lock release), so the caller can still
store them: the server keeps as much of the data as it received (tus core).
"""

from __future__ import annotations

import anyio
from starlette.types import Receive

from .errors import TusError, read_timeout

BLOCK_SIZE = 1 << 20


def connection_reset() -> TusError:
    return TusError(500, "ERR_CONNECTION_RESET", "connection was closed before the body was complete")


class BodyReader:
    def __init__(self, receive: Receive, *, limit: int, idle_timeout: float, block_size: int = BLOCK_SIZE) -> None:
        self._receive = receive
        self._remaining = limit
        self._idle_timeout = idle_timeout
        self._block_size = block_size
        self._done = False
        self.pending = bytearray()
        # True once the client sent more than `limit` bytes; the excess is dropped.
        self.overflowed = False

    @property
    def finished(self) -> bool:
        """The whole body has been handed out."""
        return self._done and not self.pending

    def take_pending(self) -> bytearray:
        block, self.pending = self.pending, bytearray()
        return block

    async def next_block(self) -> bytearray | None:
        """The next block of at most block_size bytes; None at the end of the body."""
        first_data_at = None  # read lazily: anyio calls cost ~2 us, and most blocks take one message
        while not self._done and len(self.pending) < self._block_size:
            if self.pending:
                now = anyio.current_time()
                if first_data_at is None:
                    first_data_at = now
                elif now - first_data_at >= 0.1:
                    break  # a slow body: hand over what came, so progress and offsets move
            try:
                with anyio.fail_after(self._idle_timeout):
                    message = await self._receive()
            except TimeoutError:
                raise read_timeout() from None
            if message["type"] != "http.request":  # http.disconnect
                raise connection_reset()
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                self._done = True
            if len(chunk) > self._remaining:
                self.overflowed = True
                self._done = True
                chunk = chunk[: self._remaining]
            self._remaining -= len(chunk)
            self.pending += chunk
        if not self.pending:
            return None
        return self.take_pending()
