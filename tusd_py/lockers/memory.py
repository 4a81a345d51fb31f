"""In-process locker: correct for a single worker process. Also the in-process
queue in front of the locks shared with other processes (`SharedLocker`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from ..errors import lock_timeout
from .base import NowHeld, _ignore


@dataclass
class Acquisition:
    """A request taking a lock shared beyond this process (lockers/file.py, lockers/redis.py)."""

    interrupt: bool  # ask the current holder elsewhere to let go
    acquired: bool = False


@dataclass
class _Holder:
    on_release_request: Callable[[], None]
    released: anyio.Event | None = None  # made by the first waiter: most holds have none


class MemoryLocker:
    def __init__(self, acquire_timeout: float = 20.0) -> None:
        self.acquire_timeout = acquire_timeout
        self._holders: dict[str, _Holder] = {}
        self._holds = 0  # hold()s so far, for hold_now()'s generation

    async def run(self) -> None:
        """Nothing to do in the background: release requests are direct calls."""

    def prepare_new(self, upload_id: str) -> None:
        self._holds += 1

    def discard(self, upload_id: str) -> None:
        """Nothing is kept for an upload nobody holds."""

    @asynccontextmanager
    async def queue(
        self, upload_id: str, on_release_request: Callable[[], None], *, interrupt: bool
    ) -> AsyncIterator[Acquisition]:
        """The first step of a lock shared with other processes: requests in this process
        queue here, so only one of them at a time competes for the shared lock. While it
        still waits for that lock, a request queued behind it makes it ask the holder
        elsewhere on their behalf (`Acquisition.interrupt`); once it holds the lock, it
        hears that request itself. The caller sets `acquired`."""
        state = Acquisition(interrupt)

        def on_local_release_request() -> None:
            if state.acquired:
                on_release_request()
            else:
                state.interrupt = True

        async with self.hold(upload_id, on_local_release_request, interrupt=interrupt):
            yield state

    def hold_now(self, upload_id: str) -> NowHeld | None:
        if upload_id in self._holders:
            return None
        # Nobody can start waiting meanwhile (the caller does not yield), so the release
        # has no one to wake.
        self._holders[upload_id] = _Holder(_ignore)

        def release() -> None:
            del self._holders[upload_id]

        # One count for all uploads: coarser than needed, and nothing to keep per upload.
        return release, self._holds.to_bytes(8, "little")

    @asynccontextmanager
    async def hold(
        self, upload_id: str, on_release_request: Callable[[], None] = _ignore, *, interrupt: bool = True
    ) -> AsyncIterator[None]:
        if upload_id in self._holders:  # a timeout scope costs a few us: only when waiting
            with anyio.move_on_after(self.acquire_timeout) as waiting:
                while (current := self._holders.get(upload_id)) is not None:
                    if interrupt:
                        current.on_release_request()
                    if current.released is None:
                        current.released = anyio.Event()
                    await current.released.wait()
            if waiting.cancelled_caught:
                raise lock_timeout()
        holder = _Holder(on_release_request)
        self._holders[upload_id] = holder
        self._holds += 1  # the generation hold_now() reports
        try:
            yield
        finally:
            del self._holders[upload_id]
            if holder.released is not None:
                holder.released.set()


class SharedLocker:
    """The common part of a lock shared beyond this process (lockers/file.py,
    lockers/redis.py): requests in this process queue on a MemoryLocker first
    (`MemoryLocker.queue`), and the first in line takes the shared lock. A
    subclass says how to take (`_take`) and let go of (`_let_go`) the shared lock."""

    def __init__(self, acquire_timeout: float) -> None:
        self.acquire_timeout = acquire_timeout
        self._local = MemoryLocker(acquire_timeout)

    @asynccontextmanager
    async def hold(
        self, upload_id: str, on_release_request: Callable[[], None] = _ignore, *, interrupt: bool = True
    ) -> AsyncIterator[None]:
        # time.monotonic(), not anyio.current_time(): each anyio call looks up the running
        # library first (~1.5 us; 1.4 % of W3). The subclasses' _take compare with it.
        deadline = time.monotonic() + self.acquire_timeout
        async with self._local.queue(upload_id, on_release_request, interrupt=interrupt) as state:
            await self._take(upload_id, deadline, state, on_release_request)
            state.acquired = True
            try:
                self._new_generation(upload_id)
                yield
            finally:
                await self._let_go(upload_id)

    def hold_now(self, upload_id: str) -> NowHeld | None:
        held_locally = self._local.hold_now(upload_id)
        if held_locally is None:
            return None
        release_local = held_locally[0]
        if not self._take_now(upload_id):
            release_local()
            return None

        def release() -> None:
            self._let_go_now(upload_id)
            release_local()

        return release, self._generation_now(upload_id)

    def _take_now(self, upload_id: str) -> bool:
        """Take the shared lock if that needs no waiting; False if it is busy or would need it."""
        return False

    def _let_go_now(self, upload_id: str) -> None:
        """Let go of a lock `_take_now` took."""
        raise NotImplementedError

    def _generation_now(self, upload_id: str) -> bytes:
        """The generation of a lock `_take_now` took (see `Locker.hold_now`)."""
        return b""

    def _new_generation(self, upload_id: str) -> None:
        """Called by `hold()` once it holds the shared lock: give it a new generation."""

    def prepare_new(self, upload_id: str) -> None:
        """Nothing to make (a subclass whose `hold_now` needs something does it)."""

    async def _take(
        self, upload_id: str, deadline: float, state: Acquisition, on_release_request: Callable[[], None]
    ) -> None:
        """Take the shared lock before `deadline` (raise lock_timeout otherwise); while
        waiting, ask the holder elsewhere to let go whenever `state.interrupt` is set."""
        raise NotImplementedError

    async def _let_go(self, upload_id: str) -> None:
        raise NotImplementedError
