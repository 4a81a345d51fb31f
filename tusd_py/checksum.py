"""Checksum algorithms the server verifies, and incremental hashers for them."""

from __future__ import annotations

import hashlib
from typing import Protocol

# tus names (lowercase ASCII, checksum extension) -> hashlib names.
ALGORITHMS: dict[str, str] = {
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha512": "sha512",
}
SUPPORTED: tuple[str, ...] = tuple(ALGORITHMS)


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...

    def copy(self) -> Hasher: ...


def new_hasher(algorithm: str) -> Hasher:
    return hashlib.new(ALGORITHMS[algorithm])
