"""The storage interface the handler talks to.

A store keeps an upload's bytes and its info; it knows nothing of HTTP. The
offset it reports is always the number of bytes it really holds, so it cannot
drift from a separate counter.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..checksum import Hasher
from ..info import UploadInfo


class UploadNotFound(Exception):
    """No upload with this id exists (or its files are unreadable)."""


class UploadExists(Exception):
    """An upload with this id exists already (a hook chose the id)."""


@dataclass(frozen=True)
class StoredBytes:
    """What a download needs: a local file to serve directly, or a ranged reader."""

    size: int
    modified: float  # unix time
    local_path: str | None = None
    local_stat: os.stat_result | None = None  # the local file as the store found it
    # Bytes [start, end) in blocks; used when there is no local file.
    read_range: Callable[[int, int], AsyncIterator[bytes]] | None = None


# What a writer appends: a request's message as it came, or a block it was copied into.
Buffer = bytes | bytearray | memoryview


class UploadWriter(Protocol):
    """Appends blocks at the upload's offset for the length of one request.

    A transactional writer (used when the request carries a checksum) counts
    nothing until `commit()`; leaving the context without committing rolls the
    upload back to where the request started, even after a crash.
    """

    @property
    def offset(self) -> int: ...

    @property
    def written_offset(self) -> int:
        """The offset including bytes not yet committed (progress reports)."""
        ...

    @property
    def updated_at(self) -> float: ...

    async def append(self, block: Buffer, *, last: bool = False) -> None:
        """`last`: no more blocks will follow, so the store may finish up in the same step."""
        ...

    async def commit(self) -> None: ...


class WriterProgress:
    """What every store's writer counts: where its request started, what it appended, and
    whether a transactional request committed (until then its bytes count for nothing)."""

    def __init__(self, info: UploadInfo, transactional: bool) -> None:
        self._start = info.offset
        self._written = 0
        self._transactional = transactional
        self._committed = False
        self.updated_at = info.updated_at

    @property
    def offset(self) -> int:
        if self._transactional and not self._committed:
            return self._start
        return self.written_offset

    @property
    def written_offset(self) -> int:
        return self._start + self._written

    async def commit(self) -> None:
        # Stores act on it when the writer closes, before the response is sent.
        self._committed = True


@runtime_checkable
class ImmediateStore(Protocol):
    """A store that reads and creates an upload without waiting (local files): the handler
    may then answer a HEAD, or a creation whose whole body came with it, inside the HTTP
    protocol, with no task and no ASGI cycle (asgi.py)."""

    def info_now(self, upload_id: str) -> UploadInfo:
        """`get_info` with settling, for a holder of the lock; raises UploadNotFound."""
        ...

    def create_now(self, info: UploadInfo, body: Buffer) -> UploadInfo:
        """Store a new upload complete, `body` being all its bytes, and completion done
        (`finished`): it exists, whole, once this returns, and not before. Raises
        UploadExists, or OSError with nothing left behind."""
        ...


class DataStore(Protocol):
    async def create(self, info: UploadInfo) -> UploadInfo: ...

    async def exists(self, upload_id: str) -> bool:
        """Cheap check, without a lock: does an upload with this id exist?"""
        ...

    async def get_info(self, upload_id: str, *, settle: bool = True) -> UploadInfo:
        """The upload's info with its real offset; raises UploadNotFound.

        Settling (only for the lock holder) first undoes what a request that
        never completed left behind; without it the answer is a peek."""
        ...

    def writer(
        self, info: UploadInfo, *, transactional: bool, observers: Sequence[Hasher] = ()
    ) -> AbstractAsyncContextManager[UploadWriter]:
        """Observers see every appended block (checksum hashers), in the write's own thread hop."""
        ...

    async def update_info(self, info: UploadInfo) -> None:
        """Replace the stored info (a declared length, digests), atomically."""
        ...

    async def reset(self, upload_id: str) -> None:
        """Drop every stored byte: the upload is back at offset 0."""
        ...

    async def read_digests(self, upload_id: str, algorithms: Sequence[str]) -> dict[str, bytes]:
        """Hash the stored bytes (when no running hash state survived)."""
        ...

    async def concatenate(
        self, final: UploadInfo, partials: Sequence[UploadInfo], observers: Sequence[Hasher] = ()
    ) -> UploadInfo:
        """Store `final` as the partials' bytes in order, fed to observers; returns it complete."""
        ...

    async def stored_bytes(self, upload_id: str) -> StoredBytes:
        """The upload's bytes, for downloads; raises UploadNotFound."""
        ...

    async def terminate(self, upload_id: str) -> None: ...

    def expiry_candidates(self, changed_before: float) -> AsyncIterator[str]:
        """Ids of uploads that may have expired: every unfinished upload whose last stored
        byte may be older than `changed_before` (unix time). More is fine (the sweeper checks
        each under its lock); fewer is not."""
        ...
