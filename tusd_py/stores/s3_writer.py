"""Writing one request's bytes to an upload on S3 (see stores/s3.py for the layout).

Bytes are cut into temporary files of exactly the part size; each full file is
uploaded as the next part in the background while the body still arrives.
`close()` waits for them, then stores the tail: as a part if it is big enough
or completes the upload, else as `.part`.
"""

from __future__ import annotations

import errno
import logging
import tempfile
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import anyio
import anyio.abc
import anyio.to_thread

from ..checksum import Hasher
from ..info import UploadInfo
from .base import Buffer, WriterProgress
from .s3_layout import NEXT_PART_METADATA, Listing, Part, S3Error, part_size_for

if TYPE_CHECKING:
    from .s3 import S3Store

log = logging.getLogger("tusd_py")


class PartWriter(WriterProgress):
    def __init__(
        self, store: S3Store, info: UploadInfo, listing: Listing, transactional: bool, observers: Sequence[Hasher]
    ) -> None:
        super().__init__(info, transactional)
        self._store = store
        self._info = info
        self._key = store.key(info.id)
        self._multipart_id = info.storage.get("MultipartUpload", "")
        self._part_size = part_size_for(store.settings, info.size)
        self._parts: dict[int, Part] = {p.number: p for p in listing.parts}
        self._next_number = len(listing.parts) + 1
        self._pending = listing.pending  # the `.part` this request replaces (folded in, or rewritten)
        self._to_fold = listing.pending  # ... to fold in front of this request's bytes: once, into its first part
        self._observers = observers
        self._buffer: IO[bytes] | None = None
        self._buffered = 0  # bytes in _buffer (including a folded-in .part)
        self._held: list[tuple[IO[bytes], int]] = []  # a checksummed request's full parts, not yet sent
        self._waiting = anyio.Semaphore(store.settings.max_buffered_parts)
        self._in_flight: list[anyio.Event] = []
        self._failure: BaseException | None = None
        self.uploads: anyio.abc.TaskGroup | None = None

    async def append(self, block: Buffer, *, last: bool = False) -> None:
        if self._failure is not None:
            raise S3Error(errno.EIO, str(self._failure)) from self._failure
        while block:
            if self._buffer is None:
                await self._open_buffer()
            # Parts are cut at exactly the part size: R2 wants every part but the last the same
            # size, and a block must not push a part past S3's 5 GiB.
            room = self._part_size - self._buffered
            if room > 0:
                piece, block = (block, b"") if len(block) <= room else (block[:room], block[room:])
                await anyio.to_thread.run_sync(self._write, piece)
            if self._buffered >= self._part_size:
                await self._part_full()

    def _write(self, block: Buffer) -> None:
        assert self._buffer is not None
        self._buffer.write(block)
        self._buffered += len(block)
        self._written += len(block)
        for observer in self._observers:
            observer.update(block)

    async def _open_buffer(self) -> None:
        temp_dir = self._store.settings.temp_dir
        buffer: IO[bytes] = await anyio.to_thread.run_sync(lambda: tempfile.TemporaryFile(dir=temp_dir))
        self._buffer = buffer
        pending, self._to_fold = self._to_fold, None
        if pending is not None and pending.size:
            # Bytes stored as `.part` by an earlier request open this part. One byte more is
            # asked for, so a `.part` that grew is seen too.
            async for block in self._store._read_object(self._key + ".part", 0, pending.size + 1):
                await anyio.to_thread.run_sync(buffer.write, block)
                self._buffered += len(block)
            if self._buffered != pending.size:
                raise S3Error(errno.EIO, f"the pending part of upload {self._info.id} changed while locked")

    async def _part_full(self) -> None:
        if self._transactional:  # held back until the checksum matched: S3 can not take a part back
            assert self._buffer is not None
            self._held.append((self._buffer, self._buffered))
            self._buffer, self._buffered = None, 0
        else:
            await self._send_buffer()

    async def _send_buffer(self) -> None:
        assert self._buffer is not None
        buffer, size = self._buffer, self._buffered
        self._buffer, self._buffered = None, 0
        await self._send(buffer, size)

    async def _send(self, buffer: IO[bytes], size: int) -> None:
        """Upload `buffer` as the next part, in the background (bounded by max_buffered_parts)."""
        assert self.uploads is not None
        number, self._next_number = self._next_number, self._next_number + 1
        await self._waiting.acquire()
        done = anyio.Event()
        self._in_flight.append(done)
        self.uploads.start_soon(self._upload_part, number, buffer, size, done)

    async def _upload_part(self, number: int, buffer: IO[bytes], size: int, done: anyio.Event) -> None:
        try:
            async with self._store._part_uploads:
                await anyio.to_thread.run_sync(buffer.seek, 0)
                uploaded = await self._store._call(
                    "upload_part",
                    Key=self._key,
                    UploadId=self._multipart_id,
                    PartNumber=number,
                    Body=buffer,
                    ContentLength=size,
                )
            self._parts[number] = Part(number, size, uploaded["ETag"])
        except Exception as error:
            self._failure = self._failure or error
            log.warning("upload %s: part %d failed: %s", self._info.id, number, error)
        finally:
            buffer.close()
            self._waiting.release()
            done.set()

    async def close(self) -> None:
        if self._committed:
            for buffer, size in self._held:  # the checksum matched: the parts held back go up now
                await self._send(buffer, size)
            self._held = []
        for done in self._in_flight:
            await done.wait()
        if self._transactional and not self._committed:
            self._written = 0  # the checksum failed or never came: nothing was sent, nothing counts
        if self._written == 0 or self._failure is not None:
            self._drop_buffer()
            self._raise_failure()
            return
        offset = self.written_offset
        complete = self._info.size is not None and offset == self._info.size
        pending_replaced = False
        if self._buffered >= self._store.settings.min_part_size or (complete and self._buffered):
            await self._send_buffer()
            await self._in_flight[-1].wait()
            self._raise_failure()
        elif self._buffered:
            await self._put_pending()
            pending_replaced = True
        self._drop_buffer()
        if complete:
            await self._store._complete(self._info.with_offset(offset), [self._parts[n] for n in sorted(self._parts)])
        elif self._pending is not None and not pending_replaced:
            await self._store._delete(self._key + ".part")  # folded into a part: tidy (it counts for nothing now)
        self.updated_at = time.time()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise S3Error(errno.EIO, f"storing upload {self._info.id} failed: {self._failure}") from self._failure

    async def _put_pending(self) -> None:
        assert self._buffer is not None
        buffer, size = self._buffer, self._buffered
        await anyio.to_thread.run_sync(buffer.seek, 0)
        await self._store._call(
            "put_object",
            Key=self._key + ".part",
            Body=buffer,
            ContentLength=size,
            Metadata={NEXT_PART_METADATA: str(self._next_number)},
        )

    def _drop_buffer(self) -> None:
        for buffer, _ in self._held:
            buffer.close()
        self._held = []
        if self._buffer is not None:
            self._buffer.close()
            self._buffer, self._buffered = None, 0
