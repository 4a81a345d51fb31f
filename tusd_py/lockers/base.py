"""The locking interface: one request at a time per upload.

A request that wants a busy upload asks the holder to let go (tusd's lock
release): the holder's `on_release_request` callback fires, it stops reading
its body, keeps what it stored and releases. A waiter that still has no lock
after the acquire timeout fails with 500 ERR_LOCK_TIMEOUT. Work that must not
disturb a running request (the expiration sweeper, reading the partials of a
final upload) passes `interrupt=False` and only waits.

Only a lock holder may load an upload's info: loading settles what a crashed
or cut request left behind (see stores/file.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

NowHeld = tuple[Callable[[], None], bytes]  # hold_now(): (release, generation)


def _ignore() -> None:
    """The default release-request callback: nothing to stop."""
    pass


class Locker(Protocol):
    def hold(
        self, upload_id: str, on_release_request: Callable[[], None] = _ignore, *, interrupt: bool = True
    ) -> AbstractAsyncContextManager[None]: ...

    def hold_now(self, upload_id: str) -> NowHeld | None:
        """The lock at once, for work that never yields to the event loop while it holds it
        and changes nothing (a HEAD answered inside the HTTP protocol): its release function
        and the lock's generation, or None when the lock is held or waited for, or cannot be
        had without waiting (a network locker). Never asks a holder to let go, and never
        leaves anything behind for an upload that does not exist: a caller that gets None
        takes the usual path.

        Every `hold()` gives the lock a new generation, and only holders of `hold()` change
        an upload: two `hold_now()`s that see the same generation know the upload is as it
        was. An empty generation says nothing."""
        ...

    def prepare_new(self, upload_id: str) -> None:
        """Make the lock of an upload that is being created without it (nobody knows its id
        yet: a creation answered inside the HTTP protocol) as a `hold()` would leave it, with
        a new generation, so `hold_now()` can be had for it. Raises OSError; the creator
        calls `discard` if the creation fails."""
        ...

    def discard(self, upload_id: str) -> None:
        """Forget a removed upload's lock (called by its holder)."""
        ...

    async def run(self) -> None:
        """Background duties for the app's lifetime (e.g. hearing other processes)."""
        ...
