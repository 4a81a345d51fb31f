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
processes can never hold "the same" lock on different inodes. Each `hold()`
writes new random bytes into the file: its generation (`Locker.hold_now`), read
by a HEAD answered at once to know whether the upload changed since it last
looked. The descriptors
of recently used lock files stay open (an LRU bounded by the open-file limit), so an uncontended lock
costs flock, stat and flock again instead of also an open and a close.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import anyio

from ..errors import lock_timeout
from ..fsutil import remove_if_present
from ..process_tuning import descriptor_table_size
from .base import _ignore
from .memory import Acquisition, SharedLocker

_REMOVED = -1  # the inode recorded for a held lock file that `discard` removed
GENERATION_SIZE = 8  # random bytes at the start of a lock file, new for each hold() (Locker.hold_now)


class FileLocker(SharedLocker):
    def __init__(
        self,
        directory: str | os.PathLike[str],
        acquire_timeout: float = 20.0,
        *,
        holder_poll: float = 0.25,
        acquirer_poll: float = 0.05,
        open_files: int | None = None,
    ) -> None:
        super().__init__(acquire_timeout)
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.holder_poll = holder_poll
        self.acquirer_poll = acquirer_poll
        # Holders that want to hear release requests, polled by run().
        self._watched: dict[str, Callable[[], None]] = {}
        # Lock files kept open: upload id -> (descriptor, inode), while held and after.
        self._held: dict[str, tuple[int, int]] = {}
        self._idle: OrderedDict[str, tuple[int, int]] = OrderedDict()  # least recently used first
        # Half the descriptor table grown at start (process_tuning.py): connections need the rest.
        self._open_files = open_files if open_files is not None else descriptor_table_size() // 2

    async def run(self) -> None:
        """Pass release requests from other processes to our holders (runs for the app's life)."""
        while True:
            await anyio.sleep(self.holder_poll)
            for upload_id, on_release_request in list(self._watched.items()):
                if os.access(self._stop_path(upload_id), os.F_OK):
                    on_release_request()

    def _lock_path(self, upload_id: str) -> str:
        return f"{self.directory}/{upload_id}.lock"

    def _stop_path(self, upload_id: str) -> str:
        return f"{self.directory}/{upload_id}.stop"

    def _try_lock(self, upload_id: str, *, create: bool = True) -> bool:
        path = self._lock_path(upload_id)
        kept = self._idle.pop(upload_id, None)
        for _ in range(2):  # a kept descriptor may be of a removed file: then once more, freshly opened
            if kept is None:
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if create else os.open(path, os.O_RDWR)
                except FileNotFoundError:
                    return False
                kept = fd, os.fstat(fd).st_ino
            fd, inode = kept
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._keep_idle(upload_id, kept)
                return False
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == inode:
                self._held[upload_id] = kept
                return True
            os.close(fd)  # the previous holder removed this file: lock the one at the path now
            kept = None
        return False

    def _keep_idle(self, upload_id: str, kept: tuple[int, int]) -> None:
        self._idle[upload_id] = kept
        while len(self._idle) > self._open_files:
            os.close(self._idle.popitem(last=False)[1][0])

    async def _take(
        self, upload_id: str, deadline: float, state: Acquisition, on_release_request: Callable[[], None]
    ) -> None:
        watch = on_release_request is not _ignore
        stop = self._stop_path(upload_id)
        asked = False
        while True:
            if self._try_lock(upload_id):
                # A stop file left behind would stop a watching holder: clear it. Our own
                # request (if any) was heard.
                if asked or (watch and os.access(stop, os.F_OK)):  # no exception when absent
                    remove_if_present(stop)
                if watch:
                    self._watched[upload_id] = on_release_request
                return
            if state.interrupt:
                os.close(os.open(stop, os.O_WRONLY | os.O_CREAT, 0o644))
                asked = True
            if time.monotonic() >= deadline:
                if asked:
                    remove_if_present(stop)  # don't stop the next holder on our behalf
                raise lock_timeout()
            await anyio.sleep(self.acquirer_poll)

    def _take_now(self, upload_id: str) -> bool:
        # Never makes a lock file, so the caller need not check first that the upload
        # exists: one without a lock file (gone, or never locked) takes the usual path.
        return self._try_lock(upload_id, create=False)

    def _generation_now(self, upload_id: str) -> bytes:
        return os.pread(self._held[upload_id][0], GENERATION_SIZE, 0)

    def prepare_new(self, upload_id: str) -> None:
        # Not flocked and not kept open: nobody can want this lock yet, and an upload
        # created in one request is rarely asked for again at once.
        fd = os.open(self._lock_path(upload_id), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, _generation())
        finally:
            os.close(fd)

    def _new_generation(self, upload_id: str) -> None:
        fd = self._held[upload_id][0]
        try:
            os.pwrite(fd, _generation(), 0)
        except OSError:
            # A full disk cannot take the first bytes of a new lock file. An empty file has
            # no generation, which nobody trusts; if even that fails, so does this hold.
            os.ftruncate(fd, 0)

    async def _let_go(self, upload_id: str) -> None:
        self._let_go_now(upload_id)

    def _let_go_now(self, upload_id: str) -> None:
        self._watched.pop(upload_id, None)
        fd, inode = self._held.pop(upload_id)
        if inode == _REMOVED:
            os.close(fd)
            return
        fcntl.flock(fd, fcntl.LOCK_UN)  # the lock file stays for the upload's next request
        self._keep_idle(upload_id, (fd, inode))

    def discard(self, upload_id: str) -> None:
        # Safe while others wait on the old file: a new holder checks that the file
        # it locked is still the one at the path (_try_lock).
        idle = self._idle.pop(upload_id, None)
        if idle is not None:
            os.close(idle[0])
        if upload_id in self._held:
            self._held[upload_id] = (self._held[upload_id][0], _REMOVED)  # closed on release
        remove_if_present(self._lock_path(upload_id))
        remove_if_present(self._stop_path(upload_id))


def _generation() -> bytes:
    return random.getrandbits(8 * GENERATION_SIZE).to_bytes(GENERATION_SIZE, "little")
