"""Local-disk store with tusd's filestore layout.

    <upload-dir>/<id>            the upload's bytes; its size is the offset
    <upload-dir>/<id>.info       tusd FileInfo JSON, replaced atomically
    <upload-dir>/<id>.rollback   while a checksummed request is in flight: the
                                 offset to truncate back to if it never commits

Bytes reach the page cache before the client hears about them, so a `kill -9`
of the server never loses acknowledged bytes. A `.rollback` marker left by a
crash is applied the next time the upload is loaded, so bytes of a request
whose checksum was never verified are never counted.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio

from .. import info as info_codec
from ..checksum import Hasher, new_hasher
from ..fsutil import remove_if_present
from ..info import UploadInfo
from .base import Buffer, StoredBytes, UploadExists, UploadNotFound, WriterProgress

INFO_SUFFIX = ".info"
ROLLBACK_SUFFIX = ".rollback"
# Blocks up to this size are written (and hashed) on the event loop: one ASGI message.
INLINE_WRITE = 64 * 1024


class FileStore:
    def __init__(self, upload_dir: str | os.PathLike[str], *, file_perms: int = 0o664, dir_perms: int = 0o775) -> None:
        self.directory = Path(upload_dir).absolute()
        self.file_perms = file_perms
        self.directory.mkdir(mode=dir_perms, parents=True, exist_ok=True)
        # Disk work gets its own threads so hooks or other sync code can't starve uploads,
        # and declared digests theirs, so a block is hashed while it is written.
        self._disk_threads = ThreadPoolExecutor(32, thread_name_prefix="tusd-disk")
        self._hash_threads = ThreadPoolExecutor(32, thread_name_prefix="tusd-hash")

    # Paths. Callers validate ids (protocol.is_valid_upload_id) before they get here.
    # Plain strings: pathlib's joins cost more than the system calls on this path.
    def data_path(self, upload_id: str) -> str:
        return f"{self.directory}/{upload_id}"

    def info_path(self, upload_id: str) -> str:
        return f"{self.directory}/{upload_id}{INFO_SUFFIX}"

    def _rollback_path(self, upload_id: str) -> str:
        return f"{self.directory}/{upload_id}{ROLLBACK_SUFFIX}"

    async def _run(self, func, *args):  # type: ignore[no-untyped-def]
        # run_in_executor rather than anyio's to_thread: that yields to the event loop twice
        # before the work reaches a thread, and a body reader running meanwhile fills its next
        # block first, so every block's write started ~0.3 ms late (bench/README.md).
        # Shielded, as to_thread is: a cancelled request still waits for its disk work.
        with anyio.CancelScope(shield=True):
            return await asyncio.get_running_loop().run_in_executor(self._disk_threads, func, *args)

    # Small metadata work (creating an upload's files, replacing an .info, writing a
    # block of at most INLINE_WRITE bytes) runs on the event loop: on a page-cached
    # file system it costs a few system calls, while a thread hop costs two GIL
    # hand-overs between the loop and a worker (futex wake-ups, context switches).
    # Measured with bench/ab_small.sh (16 KiB creations, c32, tmpfs): 1,130 uploads/s
    # with these in threads, about 2,000 inline. Anything that may take long (large
    # blocks, hashing a whole file, truncating or removing a large file) keeps its thread.

    # --- info ------------------------------------------------------------------

    def _storage_fields(self, upload_id: str, data_path: str | None = None) -> dict[str, str]:
        # Reported to hooks as tusd does; never read back to find the bytes.
        return {
            "Type": "filestore",
            "Path": data_path or self.data_path(upload_id),
            "InfoPath": self.info_path(upload_id),
        }

    def _write_info(self, info: UploadInfo) -> None:
        # Write a temp file and rename it over the old one: a reader (or a
        # restart after a crash) sees the old document or the new, never half.
        # Plain descriptors: Python file objects cost more than the system calls here.
        target = self.info_path(info.id)
        temp = f"{target}.{_temp_suffix()}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_perms)
            try:
                _write_all(fd, info_codec.encode(info))
                os.fchmod(fd, self.file_perms)  # exactly these, whatever the umask
            finally:
                os.close(fd)
            os.replace(temp, target)
        except BaseException:
            remove_if_present(temp)  # a full disk must not leave half-written temp files behind
            raise

    def _load(self, upload_id: str, settle: bool = True) -> UploadInfo:
        try:
            raw = _read_small(self.info_path(upload_id))
        except OSError as exc:
            raise UploadNotFound(upload_id) from exc
        if settle:
            self._apply_rollback(upload_id)
        try:
            stat = os.stat(self.data_path(upload_id))
            info = info_codec.decode(raw, offset=stat.st_size, updated_at=stat.st_mtime)
        except (OSError, ValueError) as exc:
            raise UploadNotFound(upload_id) from exc
        return info if info.id == upload_id else replace(info, id=upload_id)

    def _apply_rollback(self, upload_id: str) -> None:
        marker = self._rollback_path(upload_id)
        if not os.access(marker, os.F_OK):
            return  # the usual case, and cheaper than a failed open (an exception)
        try:
            with open(marker, "rb") as f:
                start = int(f.read())
            with open(self.data_path(upload_id), "r+b") as f:
                if os.fstat(f.fileno()).st_size > start:
                    f.truncate(start)
            os.unlink(marker)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # a marker we did not write: the upload is unusable
            raise UploadNotFound(upload_id) from exc

    def info_now(self, upload_id: str) -> UploadInfo:
        return self._load(upload_id)

    def create_now(self, info: UploadInfo, body: Buffer) -> UploadInfo:
        # The bytes first, then the only .info: a crash in between leaves bytes
        # without an .info, which no request finds (as tusd's creation can).
        info = replace(info, offset=len(body), finished=True, storage=self._storage_fields(info.id))
        return self._make_files(info, body)

    def _exists(self, upload_id: str) -> bool:
        # os.access rather than os.path.exists: no exception when absent (the usual answer).
        return os.access(self.info_path(upload_id), os.F_OK)

    async def exists(self, upload_id: str) -> bool:
        return self._exists(upload_id)

    async def get_info(self, upload_id: str, *, settle: bool = True) -> UploadInfo:
        # Inline, not in a thread: reading a small, page-cached file and one
        # stat cost ~20 us, while a thread hop costs ~100 us of CPU. Measured
        # with bench W4 (HEAD): 7,200 req/s inline vs 4,800 threaded.
        return self._load(upload_id, settle)

    async def create(self, info: UploadInfo) -> UploadInfo:
        # A pre-create hook may choose where the bytes go (tusd: Storage.Path, absolute
        # or relative to the upload directory). They are written there and reached
        # through a symlink at <id>, so nothing else ever follows a path from an .info.
        custom_path = info.storage.get("Path")
        if custom_path:
            custom_path = os.path.join(self.directory, custom_path)  # an absolute path stays as it is
        info = replace(info, storage=self._storage_fields(info.id, custom_path))
        return self._make_files(info, b"", custom_path)  # inline: see _run

    def _make_files(self, info: UploadInfo, body: Buffer, custom_path: str | None = None) -> UploadInfo:
        """A new upload's data file holding `body` (at `custom_path`, reached through a symlink
        at <id>, if given), then its .info. Raises UploadExists if the upload or its data file
        is there already; on any failure, nothing it made is left behind."""
        if self._exists(info.id):
            raise UploadExists(info.id)
        target = custom_path or self.data_path(info.id)
        if custom_path:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_perms)
        except FileExistsError:
            raise UploadExists(info.id) from None
        made = [target]  # no upload without its info
        try:
            try:
                if custom_path:
                    try:
                        os.symlink(target, self.data_path(info.id))
                    except FileExistsError:
                        raise UploadExists(info.id) from None
                    made.append(self.data_path(info.id))
                _write_all(fd, body)
                stat = os.fstat(fd)
            finally:
                os.close(fd)
            self._write_info(info)
        except BaseException:
            for path in made:
                remove_if_present(path)
            raise
        return replace(info, updated_at=stat.st_mtime)

    async def update_info(self, info: UploadInfo) -> None:
        self._write_info(info)  # inline: see _run

    async def reset(self, upload_id: str) -> None:
        await self._run(os.truncate, self.data_path(upload_id), 0)

    async def read_digests(self, upload_id: str, algorithms: Sequence[str]) -> dict[str, bytes]:
        def read() -> dict[str, bytes]:
            hashers = {name: new_hasher(name) for name in algorithms}
            with open(self.data_path(upload_id), "rb") as f:
                while block := f.read(1 << 20):
                    for hasher in hashers.values():
                        hasher.update(block)
            return {name: hasher.digest() for name, hasher in hashers.items()}

        return await self._run(read)

    async def stored_bytes(self, upload_id: str) -> StoredBytes:
        path = self.data_path(upload_id)
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise UploadNotFound(upload_id) from exc
        return StoredBytes(size=stat.st_size, modified=stat.st_mtime, local_path=path, local_stat=stat)

    async def terminate(self, upload_id: str) -> None:
        def remove() -> None:
            # The info goes first: once it is gone the upload no longer exists.
            rollback = self._rollback_path(upload_id)
            data = self.data_path(upload_id)
            stored_at = os.path.realpath(data)  # a pre-create hook's Storage.Path, else data itself
            for path in (self.info_path(upload_id), data, stored_at, rollback, rollback + ".tmp"):
                remove_if_present(path)

        await self._run(remove)

    async def concatenate(
        self, final: UploadInfo, partials: Sequence[UploadInfo], observers: Sequence[Hasher] = ()
    ) -> UploadInfo:
        final = replace(final, storage=self._storage_fields(final.id))

        def build() -> UploadInfo:
            # Assemble under a temporary name so a crash never leaves a final
            # upload whose bytes are short; the info is written last.
            target = self.data_path(final.id)
            if os.access(target, os.F_OK) or self._exists(final.id):
                raise UploadExists(final.id)
            temp = f"{target}.{_temp_suffix()}.concat"
            try:
                with open(temp, "wb") as out:
                    for partial in partials:
                        with open(self.data_path(partial.id), "rb") as src:
                            while block := src.read(1 << 20):
                                out.write(block)
                                for observer in observers:
                                    observer.update(block)
                os.chmod(temp, self.file_perms)
                os.replace(temp, target)
            except BaseException:
                remove_if_present(temp)
                raise
            self._write_info(final.with_offset(final.size or 0))
            return replace(final, offset=final.size or 0, updated_at=os.stat(target).st_mtime)

        return await self._run(build)

    async def expiry_candidates(self, changed_before: float) -> AsyncIterator[str]:
        # Every upload: loading one to look is cheap here.
        names = await self._run(os.listdir, self.directory)
        for name in names:
            if name.endswith(INFO_SUFFIX):
                yield name[: -len(INFO_SUFFIX)]

    # --- writing ---------------------------------------------------------------

    @asynccontextmanager
    async def writer(
        self, info: UploadInfo, *, transactional: bool, observers: Sequence[Hasher] = ()
    ) -> AsyncIterator[_FileWriter]:
        writer = _FileWriter(self, info, transactional, observers)
        try:
            yield writer
        finally:
            # Runs even when the request was cancelled: the bytes must be
            # settled (kept, or rolled back) before the lock is released.
            if writer.opened:
                if writer.rolls_back:  # truncating may free many blocks: not on the event loop
                    with anyio.CancelScope(shield=True):
                        await self._run(writer.close)
                else:
                    writer.close()


def _temp_suffix() -> str:
    # Not secret: O_EXCL refuses a name that exists, and nothing else can be at it (a
    # symlink included). random instead of secrets: no getrandom call (~2 % of W3).
    return f"{random.getrandbits(32):08x}"


def _write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_small(path: str) -> bytes:
    """A whole small file (an .info), through a plain descriptor."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            chunks.append(chunk)
            if len(chunk) < 1 << 16:  # a short read of a regular file is its end
                return b"".join(chunks)
    finally:
        os.close(fd)


class _FileWriter(WriterProgress):
    def __init__(self, store: FileStore, info: UploadInfo, transactional: bool, observers: Sequence[Hasher]) -> None:
        super().__init__(info, transactional)
        self._store = store
        self._id = info.id
        self._observers = observers
        self._fd = -1

    @property
    def opened(self) -> bool:
        return self._fd >= 0

    def _open(self) -> None:
        # In the first write's thread hop: an empty body costs no file operation at all.
        self._fd = os.open(self._store.data_path(self._id), os.O_WRONLY)
        if self._transactional:
            marker = self._store._rollback_path(self._id)
            try:
                with open(marker + ".tmp", "w") as f:
                    f.write(str(self._start))
                os.replace(marker + ".tmp", marker)
            except BaseException:  # disk full: no stray marker, no leaked descriptor
                os.close(self._fd)
                self._fd = -1
                remove_if_present(marker + ".tmp")
                raise

    @property
    def rolls_back(self) -> bool:
        """Closing now would truncate what this request wrote."""
        return self._transactional and not self._committed and self._written > 0

    async def append(self, block: Buffer, *, last: bool = False) -> None:
        if len(block) <= INLINE_WRITE:
            self._write(block, last)  # see FileStore._run
            self._observe(block)
        elif not self._observers:
            await self._store._run(self._write, block, last)
        else:
            await self._store._run(self._write_and_observe, block, last)

    def _write_and_observe(self, block: Buffer, last: bool) -> None:
        # Hashing a block costs about as much as writing it, and both release the GIL: side
        # by side in two threads. A failed write loses the hashers' state anyway
        # (completion.py), so they may have seen the block first.
        hashed = self._store._hash_threads.submit(self._observe, block)
        try:
            self._write(block, last)
        finally:
            hashed.result()

    def _observe(self, block: Buffer) -> None:
        for observer in self._observers:
            observer.update(block)

    def _write(self, block: Buffer, last: bool = False) -> None:
        if self._fd < 0:
            self._open()
        view = memoryview(block)
        position = self._start + self._written
        while view:
            n = os.pwrite(self._fd, view, position)
            position += n
            self._written += n
            view = view[n:]
        if last and not self._transactional:
            self.close()  # in this thread hop rather than one more (a checksum still has to be checked)

    def close(self) -> None:
        try:
            if self._transactional:
                if not self._committed:
                    os.ftruncate(self._fd, self._start)
                    self._written = 0
                remove_if_present(self._store._rollback_path(self._id))
            self.updated_at = os.fstat(self._fd).st_mtime
        finally:
            os.close(self._fd)
            self._fd = -1
