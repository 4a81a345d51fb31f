"""Request body reader: large blocks, a byte cap, and an idle timeout.

ASGI servers hand the body over in messages of at most ~64 KiB. Writing each
one separately would cost a thread hop per message, so the reader coalesces
them into blocks of about `block_size` bytes (a block ends with the message that
fills it), so it holds at most one block and one message.

Bytes received but not yet handed out stay in `pending` when reading fails
(timeout, disconnect, cancellation by a lock release), so the caller can still
store them: the server keeps as much of the data as it received (tus core).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.requests import ClientDisconnect

from .errors import TusError, read_timeout

BLOCK_SIZE = 1 << 20


def connection_reset() -> TusError:
    return TusError(500, "ERR_CONNECTION_RESET", "connection was closed before the body was complete")


class BodyReader:
    def __init__(
        self, chunks: AsyncIterator[bytes], *, limit: int, idle_timeout: float, block_size: int = BLOCK_SIZE
    ) -> None:
        self._chunks = chunks
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
        started = anyio.current_time()
        while not self._done and len(self.pending) < self._block_size:
            if self.pending and anyio.current_time() - started >= 0.1:
                break  # a slow body: hand over what came, so progress and offsets move
            try:
                with anyio.fail_after(self._idle_timeout):
                    chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._done = True
                break
            except TimeoutError:
                raise read_timeout() from None
            except ClientDisconnect:
                raise connection_reset() from None
            if len(chunk) > self._remaining:
                self.overflowed = True
                self._done = True
                chunk = chunk[: self._remaining]
            self._remaining -= len(chunk)
            self.pending += chunk
        if not self.pending:
            return None
        return self.take_pending()
