"""File locker: upload locks shared by every process on one host.

    <dir>/<id>.lock   held with flock(LOCK_EX) by the current holder
    <dir>/<id>.stop   created by a process that wants the holder to let go

Within a process, requests queue on an in-process `MemoryLocker` first, so
a holder in the same process hears a release request at once. Across
processes, `run()` (started by the app) looks for `<id>.stop` of every held
upload each `holder_poll` seconds and a waiter retries every `acquirer_poll`
seconds (tusd's filelocker does the same
with a PID file and 5 s / 2 s polls; ours are short enough that a stuck
request stops well within 3 s).

A lock file lives as long as its upload (creating and deleting one per request
cost ~50 us): the holder that sees the upload gone deletes it (`discard`), and a
new holder checks that the file it locked is still the one at the path, so two
processes can never hold "the same" lock on different inodes.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from ..errors import lock_timeout
from ..fsutil import remove_if_present
from .base import _ignore
from .memory import Acquisition, MemoryLocker


class FileLocker:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        acquire_timeout: float = 20.0,
        *,
        holder_poll: float = 0.25,
        acquirer_poll: float = 0.05,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.acquire_timeout = acquire_timeout
        self.holder_poll = holder_poll
        self.acquirer_poll = acquirer_poll
        self._local = MemoryLocker(acquire_timeout)
        # Holders that want to hear release requests, polled by run().
        self._watched: dict[str, Callable[[], None]] = {}

    @asynccontextmanager
    async def hold(
        self, upload_id: str, on_release_request: Callable[[], None] = _ignore, *, interrupt: bool = True
    ) -> AsyncIterator[None]:
        deadline = anyio.current_time() + self.acquire_timeout
        async with self._local.queue(upload_id, on_release_request, interrupt=interrupt) as state:
            fd = await self._acquire(upload_id, deadline, state)
            state.acquired = True
            if on_release_request is not _ignore:
                self._watched[upload_id] = on_release_request
            try:
                yield
            finally:
                self._watched.pop(upload_id, None)
                self._release(upload_id, fd)

    async def run(self) -> None:
        """Pass release requests from other processes to our holders (runs for the app's life)."""
        while True:
            await anyio.sleep(self.holder_poll)
            for upload_id, on_release_request in list(self._watched.items()):
                if os.path.exists(self._stop_path(upload_id)):
                    on_release_request()

    def _lock_path(self, upload_id: str) -> str:
        return f"{self.directory}/{upload_id}.lock"

    def _stop_path(self, upload_id: str) -> str:
        return f"{self.directory}/{upload_id}.stop"

    def _try_lock(self, upload_id: str) -> int | None:
        path = self._lock_path(upload_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is None or current.st_ino != os.fstat(fd).st_ino:
            os.close(fd)  # the previous holder removed this file: lock the new one
            return None
        return fd

    async def _acquire(self, upload_id: str, deadline: float, state: Acquisition) -> int:
        stop = self._stop_path(upload_id)
        asked = False
        while True:
            fd = self._try_lock(upload_id)
            if fd is not None:
                if asked or os.path.exists(stop):
                    remove_if_present(stop)  # our request (if any) was heard
                return fd
            if state.interrupt:
                os.close(os.open(stop, os.O_WRONLY | os.O_CREAT, 0o644))
                asked = True
            if anyio.current_time() >= deadline:
                if asked:
                    remove_if_present(stop)  # don't stop the next holder on our behalf
                raise lock_timeout()
            await anyio.sleep(self.acquirer_poll)

    def _release(self, upload_id: str, fd: int) -> None:
        os.close(fd)  # closing drops the flock; the lock file stays for the upload's next request

    def discard(self, upload_id: str) -> None:
        # Safe while others wait on the old file: a new holder checks that the file
        # it locked is still the one at the path (_try_lock).
        remove_if_present(self._lock_path(upload_id))
        remove_if_present(self._stop_path(upload_id))
