"""Streaming one request body into an upload.

Bytes that arrived are kept whatever goes wrong (tus core: store as much as
possible), unless the request carries an Upload-Checksum: then they count only
once the whole body arrived and matched, and are rolled back otherwise. The
upload's running whole-file hashers see exactly the bytes that count.

A transfer can be stopped from outside: by a newer request for the same
upload (lock release, 400 ERR_UPLOAD_INTERRUPTED) or by server shutdown
(503 ERR_SERVER_SHUTDOWN). Either way the bytes received so far are settled
before the response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import anyio
from starlette.types import Receive

from .body import Block, BodyReader, crowded
from .checksum import Hasher, new_hasher
from .completion import Hashers
from .errors import TusError, checksum_mismatch, server_shutdown, upload_interrupted
from .info import UploadInfo
from .protocol import Checksum
from .socket_body import SocketBody
from .stores import DataStore, UploadWriter


class Transfer:
    """A body being received. The first reason it is stopped for wins.

    A stop cancels whatever reads the body (`reading()`), before or while it
    reads; writes of what was read are never cut short."""

    def __init__(self) -> None:
        self.reason: TusError | None = None
        self.terminate = False  # a post-receive hook asked to stop and remove the upload
        self.stopped = False
        self.interrupted = False  # a stop actually cut a read short
        self._scopes: list[anyio.CancelScope] = []

    def stop(self, reason: TusError, *, terminate: bool = False) -> None:
        if self.reason is None:
            self.reason = reason
            self.terminate = terminate
        self.stopped = True
        for scope in self._scopes:
            scope.cancel()

    @contextmanager
    def reading(self) -> Iterator[None]:
        scope = anyio.CancelScope()
        if self.stopped:
            scope.cancel()
        self._scopes.append(scope)
        try:
            with scope:
                yield
        finally:
            self._scopes.remove(scope)
            self.interrupted = self.interrupted or scope.cancelled_caught

    def release_requested(self) -> None:
        self.stop(upload_interrupted())


class Transfers:
    """The transfers running in this process, so shutdown can stop them all."""

    def __init__(self) -> None:
        self._active: set[Transfer] = set()
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def shutdown(self) -> None:
        self._closing = True
        for transfer in list(self._active):
            transfer.stop(server_shutdown())

    @contextmanager
    def track(self, transfer: Transfer) -> Iterator[None]:
        self._active.add(transfer)
        if self._closing:
            transfer.stop(server_shutdown())
        try:
            yield
        finally:
            self._active.discard(transfer)


@dataclass
class Received:
    info: UploadInfo  # with the new offset
    failure: TusError | None  # what to answer instead of success
    hashers: Hashers | None  # running whole-file hashers at info.offset, if still valid


async def _pump(
    reader: BodyReader,
    writer: UploadWriter,
    transfer: Transfer,
    on_progress: Callable[[int], None] | None,
) -> TusError | None:
    """Read the next block while the previous one is written (and hashed) in a
    thread, so socket and disk work overlap. Returns the read error, if any."""
    failure: TusError | None = None
    first: Block | None = None

    async def write(block: Block, last: bool) -> None:
        await writer.append(block, last=last)
        reader.recycle(block)
        if on_progress is not None:
            on_progress(writer.written_offset)

    try:
        with transfer.reading():
            first = await reader.next_block()
    except TusError as error:
        failure = error
    if first is None:  # an empty body, or it failed before a whole block came: the caller stores what did
        return failure
    if reader.finished:
        # The whole body in one block (every small upload): nothing to overlap, so no
        # task group, stream and second task. With body.py reading `receive` directly:
        # 2,230 -> 2,760 16 KiB creations/s (bench/ab_small.sh, bench/README.md).
        await write(first, True)
        return None
    # No buffer: a block is handed over only when the writer takes it, so an upload
    # holds two blocks at most (one written, one filled), one while bodies are crowded.
    send, receive = anyio.create_memory_object_stream[tuple[Block, bool, anyio.Event | None]](0)

    async def write_blocks() -> None:
        async with receive:
            async for block, last, written in receive:
                await write(block, last)
                if written is not None:
                    written.set()

    async def read_blocks() -> None:
        nonlocal failure, first
        async with send:
            block, first = first, None  # held by the block alone: freed once written
            try:
                while block is not None:
                    # The hand-over is outside the stoppable scope: a stop that came just
                    # as the writer took the block must not leave it counted as unsent.
                    # Many bodies at once keep both cores busy on their own: each fills its
                    # next block into the one just written (W5: 4 MiB less, as fast).
                    written = anyio.Event() if crowded() else None
                    await send.send((block, reader.finished, written))
                    block = None
                    if written is not None:
                        await written.wait()
                    with transfer.reading():
                        block = await reader.next_block()
            except TusError as error:
                failure = error
            except anyio.BrokenResourceError:
                pass  # the writer failed (disk full...): its error is the one to report
            if block is not None:  # read, but not handed over: still to be stored
                reader.unread(block)

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(write_blocks)
            await read_blocks()
    except BaseExceptionGroup as group:  # a failed write (disk full, ...): surface it as itself
        raise _first_leaf(group) from None
    return failure


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def receive_body(
    store: DataStore,
    info: UploadInfo,
    receive: Receive,
    *,
    limit: int,
    too_long: TusError,
    idle_timeout: float,
    checksum: Checksum | None,
    running: Hashers | None,
    transfer: Transfer,
    on_progress: Callable[[int], None] | None = None,
    socket_body: SocketBody | None = None,
) -> Received:
    request_hasher = new_hasher(checksum.algorithm) if checksum else None
    # A checksummed request may be rolled back: hash into copies, adopted on commit.
    hashers = running if running is None or checksum is None else {k: h.copy() for k, h in running.items()}
    observers: list[Hasher] = [*(hashers or {}).values(), *([request_hasher] if request_hasher else [])]
    async with store.writer(info, transactional=checksum is not None, observers=observers) as writer:
        # Closed below, whatever happens.
        reader = BodyReader(receive, limit=limit, idle_timeout=idle_timeout, socket_body=socket_body)
        try:
            failure = await _pump(reader, writer, transfer, on_progress)
            if reader.has_pending:
                with anyio.CancelScope(shield=True):
                    for block in reader.take_pending():
                        await writer.append(block)
        finally:
            reader.close()
        if transfer.interrupted:
            failure = transfer.reason
        elif failure is None and reader.overflowed:
            failure = too_long
        if request_hasher is not None and checksum is not None:
            if failure is None and request_hasher.digest() != checksum.digest:
                failure = checksum_mismatch()
            if failure is None:
                await writer.commit()
            else:
                hashers = running  # rolled back: the old state still matches the old offset
    return Received(replace(info, offset=writer.offset, updated_at=writer.updated_at), failure, hashers)
