"""Request body reader: fixed-size blocks, a byte cap, and an idle timeout.

ASGI servers hand the body over in messages of at most a few hundred KiB.
Writing each one separately would cost a thread hop per message, so the reader
copies them into blocks of exactly `block_size` bytes (the last one may be
shorter). A written block is given back (`recycle`) and filled again, so an
upload holds at most two blocks (one being written, one being filled; only one
while more than CROWD bodies are in flight, transfer.py) plus the part of one
message that did not fit: memory per upload is bounded, and no block is
allocated, grown or freed per MiB (glibc kept such blocks resident: W5 peaked
at 78 MiB). Block sizes are shared out among the bodies in flight (below).

A body that arrives in one message (every small upload) is handed out as that
message, without a copy. The rest of a larger body is read from the socket
straight into the block when the server offers it (socket_body.py): one copy
instead of uvicorn's three.

It reads the ASGI `receive` channel itself rather than Starlette's
`request.stream()`: the message that says `more_body: false` ends the body at
once, where the stream costs two more rounds (an empty chunk, then the end),
each under its own idle timeout.

Bytes received but not yet handed out stay pending when reading fails
(timeout, disconnect, cancellation by a lock release), so the caller can still
store them (`take_pending`): the server keeps as much of the data as it
received (tus core).
"""

from __future__ import annotations

import asyncio

import anyio
from starlette.types import Receive

from .errors import TusError, read_timeout
from .socket_body import SocketBody
from .stores.base import Buffer

BLOCK_SIZE = 2 << 20
# Block memory shared by every body in flight: up to two bodies get whole blocks, more get
# smaller ones (never below MIN_BLOCK_SIZE), so eight parallel uploads hold ~8 MiB, not 32.
# The size is chosen for each new block, not once per body, so bodies that started alone
# shrink theirs when others arrive (sized once, W5's blocks took 13 MiB).
BLOCK_BUDGET = 4 << 20
MIN_BLOCK_SIZE = 256 << 10
# At most this for the first block of a body that starts while others are in flight.
FIRST_SHARED_BLOCK = 512 << 10
# Above this many bodies in flight, a body fills its next block only once the last one is
# written (transfer.py): the bodies overlap each other's disk and socket work instead.
CROWD = 4
_bodies_in_flight = 0
Block = Buffer

# Spare blocks kept between requests (a run of 1 MiB PATCHes reuses one), at most this many.
_SPARE_BLOCKS = 2
_spares: list[bytearray] = []
# A message smaller than this waits as it is until another comes, before a block is taken
# for it: a thousand stalled bodies of a few bytes must not hold a thousand blocks.
_SMALL = 64 * 1024


def crowded() -> bool:
    """So many bodies in flight that each should hold one block at a time."""
    return _bodies_in_flight > CROWD


def _shared_block_size() -> int:
    return max(MIN_BLOCK_SIZE, min(BLOCK_SIZE, BLOCK_BUDGET // max(1, _bodies_in_flight)))


def connection_reset() -> TusError:
    return TusError(500, "ERR_CONNECTION_RESET", "connection was closed before the body was complete")


class BodyReader:
    def __init__(
        self, receive: Receive, *, limit: int, idle_timeout: float, socket_body: SocketBody | None = None
    ) -> None:
        global _bodies_in_flight
        _bodies_in_flight += 1
        self._counted = True
        self._receive = receive
        self._socket_body = socket_body  # offered by the server; taken over after a first message
        self._remaining = limit
        self._idle_timeout = idle_timeout
        self._block_size = _shared_block_size()  # of the block being filled
        self._done = False
        self._buffer: bytearray | None = None  # the block being filled; its first _fill bytes are data
        self._fill = 0
        self._first_block = True
        self._carry = memoryview(b"")  # the part of the last message that did not fit the block
        self._spare: bytearray | None = None  # a written block, to fill next
        self._unread: list[Block] = []  # handed out, then given back unwritten
        # True once the client sent more than `limit` bytes; the excess is dropped.
        self.overflowed = False

    @property
    def has_pending(self) -> bool:
        return bool(self._unread or self._fill or self._carry)

    @property
    def from_socket(self) -> bool:
        """The rest of the body is (or was) read from the socket, not from messages."""
        return self._socket_body is not None and self._socket_body.taken

    @property
    def finished(self) -> bool:
        """The whole body has been handed out."""
        return self._done and not self.has_pending

    def take_pending(self) -> list[Block]:
        """What was received but not handed out (or given back), in order."""
        blocks, self._unread = self._unread, []
        if self._fill:
            blocks.append(self._hand_out())
        if self._carry:
            blocks.append(self._carry)
            self._carry = memoryview(b"")
        return blocks

    def unread(self, block: Block) -> None:
        """Give back a block that was handed out but not written."""
        self._unread.insert(0, block)

    def recycle(self, block: Block) -> None:
        """A handed-out block is written: its memory may be filled again."""
        if type(block) is memoryview:
            block = block.obj  # type: ignore[assignment]  # a part of one of our blocks, or of a message
        if type(block) is bytearray and len(block) == self._block_size:
            self._spare = block

    def close(self) -> None:
        """Keep a spare block for the next request, within _SPARE_BLOCKS."""
        global _bodies_in_flight
        if self._counted:
            self._counted = False
            _bodies_in_flight -= 1
        if self._socket_body is not None:
            self._socket_body.close()
        for block in (self._spare, self._buffer):
            if block is not None and len(block) == BLOCK_SIZE and len(_spares) < _SPARE_BLOCKS:
                _spares.append(block)
        self._spare = self._buffer = None
        self._fill = 0

    def _take_block(self) -> bytearray:
        if self._buffer is None:
            self._block_size = _shared_block_size()
            if self._first_block and _bodies_in_flight > 1:
                # Bodies that start together (W5) would each take a large first block
                # before they know of each other: ~4 MiB more at W5's peak.
                self._block_size = min(self._block_size, FIRST_SHARED_BLOCK)
            self._first_block = False
            spare, self._spare = self._spare, None
            if spare is not None and len(spare) == self._block_size:
                self._buffer = spare
            elif self._block_size == BLOCK_SIZE and _spares:
                self._buffer = _spares.pop()
            else:
                if self._block_size < BLOCK_SIZE:
                    # Bodies share smaller blocks now: whole spare blocks would sit unused
                    # (W5 held 4 MiB of them, left by W2), so they are let go.
                    _spares.clear()
                self._buffer = bytearray(self._block_size)
        return self._buffer

    def _put(self, data: memoryview) -> memoryview:
        """Copy what fits of `data` into the block being filled; returns the rest."""
        block = self._take_block()
        count = min(len(data), self._block_size - self._fill)
        # Through a memoryview: a bytearray slice assignment copies a non-bytearray source
        # into a temporary first (malloc + free of each message: brk churn, page faults).
        with memoryview(block) as target:
            target[self._fill : self._fill + count] = data[:count]
        self._fill += count
        return data[count:]

    def _hand_out(self) -> Block:
        block, self._buffer = self._buffer, None
        assert block is not None
        fill, self._fill = self._fill, 0
        if fill < len(block):
            # A last (or slow) block: exactly its bytes, as a view, so the block stays whole
            # to be filled again. Trimmed, every 1 MiB PATCH allocated a block anew: W2 -45 %.
            return memoryview(block)[:fill]
        return block

    async def _read_socket(self, socket: SocketBody) -> None:
        """Read from the socket into the block being filled."""
        try:
            count = await socket.recv_into(self._take_block(), self._fill, self._block_size)
        except OSError:
            raise connection_reset() from None
        self._fill += count
        self._remaining -= count
        if not socket.remaining:
            self._done = True

    async def next_block(self) -> Block | None:
        """The next block of at most block_size bytes; None at the end of the body."""
        first_data_at = None  # read lazily: anyio calls cost ~2 us, and most blocks take few messages
        while True:
            socket = self._socket_body if self.from_socket else None
            if self._carry and (self._buffer is not None or len(self._carry) >= _SMALL or socket is not None):
                self._carry = self._put(self._carry)
            if self._fill == self._block_size:
                return self._hand_out()
            if self._done:
                break
            if self._fill or self._carry:
                now = anyio.current_time()
                if first_data_at is None:
                    first_data_at = now
                elif now - first_data_at >= 0.1:
                    break  # a slow body: hand over what came, so progress and offsets move
            try:
                # asyncio's timeout, not anyio.fail_after: that looks up the running library
                # twice and wraps two context managers (~4 % of W3's CPU). uvicorn runs on
                # asyncio only; anyio's scopes around this (Transfer.reading) still cancel it.
                async with asyncio.timeout(self._idle_timeout):
                    if socket is not None:
                        await self._read_socket(socket)
                        continue
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
            if not self._done and self._socket_body is not None:
                self._socket_body.take_over(self._remaining)
            if not chunk:
                continue
            if self._done and not self._fill and not self._carry and len(chunk) <= self._block_size:
                return chunk  # the rest of the body in one message: no copy
            if self._carry:  # a small message waited for company: both go into a block now
                self._carry = self._put(self._carry)
            self._carry = memoryview(chunk)
        if self._fill:
            return self._hand_out()
        if self._carry:  # less than _SMALL bytes, never copied
            block, self._carry = self._carry, memoryview(b"")
            return block
        return None
