"""The storage interface the handler talks to.

A store keeps an upload's bytes and its info; it knows nothing of HTTP. The
offset it reports is always the number of bytes it really holds, so it cannot
drift from a separate counter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ..checksum import Hasher
from ..info import UploadInfo


class UploadNotFound(Exception):
    """No upload with this id exists (or its files are unreadable)."""


class UploadWriter(Protocol):
    """Appends blocks at the upload's offset for the length of one request.

    A transactional writer (used when the request carries a checksum) counts
    nothing until `commit()`; leaving the context without committing rolls the
    upload back to where the request started, even after a crash.
    """

    @property
    def offset(self) -> int: ...

    @property
    def updated_at(self) -> float: ...

    async def append(self, block: bytes | bytearray) -> None: ...

    async def commit(self) -> None: ...


class DataStore(Protocol):
    async def create(self, info: UploadInfo) -> UploadInfo: ...

    async def get_info(self, upload_id: str) -> UploadInfo:
        """The upload's info with its real offset; raises UploadNotFound."""
        ...

    def writer(
        self, info: UploadInfo, *, transactional: bool, observers: Sequence[Hasher] = ()
    ) -> AbstractAsyncContextManager[UploadWriter]:
        """Observers see every appended block (checksum hashers), in the write's own thread hop."""
        ...

    async def declare_length(self, info: UploadInfo, size: int) -> UploadInfo: ...

    async def concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> UploadInfo:
        """Store `final` as the partials' bytes in order; returns it complete."""
        ...

    async def terminate(self, upload_id: str) -> None: ...

    def list_ids(self) -> AsyncIterator[str]: ...
