"""The S3 store's pure parts: settings, part sizes, what a listing of an upload means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MiB = 1 << 20
MAX_PARTS = 10_000  # S3's limit per multipart upload
MAX_PART_SIZE = 5 * 1024 * MiB
NEXT_PART_METADATA = "next-part"  # on `.part`: the number of the part its bytes will open
_MISSING = ("NoSuchKey", "404", "NotFound", "NoSuchUpload")


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint: str = ""
    object_prefix: str = ""
    part_size: int = 50 * MiB  # preferred; grows for uploads that would need more than MAX_PARTS
    min_part_size: int = 5 * MiB  # S3's minimum for every part but the last
    max_buffered_parts: int = 20
    concurrent_part_uploads: int = 10
    temp_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("an S3 bucket is required")
        if not 0 < self.min_part_size <= self.part_size <= MAX_PART_SIZE:
            raise ValueError("S3 part sizes must satisfy 0 < min part size <= part size <= 5 GiB")
        if self.max_buffered_parts < 1 or self.concurrent_part_uploads < 1:
            raise ValueError("S3 buffered parts and concurrent part uploads must be at least 1")


def part_size_for(settings: S3Settings, upload_size: int | None) -> int:
    """The preferred size, or larger when the upload would otherwise need more than 10,000 parts."""
    if upload_size is None or upload_size <= settings.part_size * MAX_PARTS:
        return settings.part_size
    return min(MAX_PART_SIZE, math.ceil(upload_size / MAX_PARTS))


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    modified: float = 0.0


@dataclass(frozen=True)
class Pending:
    """The `.part` object: bytes waiting to open part `next_part`."""

    size: int
    next_part: int
    modified: float


@dataclass(frozen=True)
class Listing:
    """What S3 holds of an upload in progress."""

    parts: tuple[Part, ...]
    pending: Pending | None

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts) + (self.pending.size if self.pending else 0)


@dataclass
class KeysSeen:
    """An upload's keys in a bucket listing (expiration sweeps)."""

    completed: bool = False  # `<id>` exists: complete, never expires
    info_modified: float | None = None
    latest: float = 0.0

    def record(self, suffix: str, modified: float) -> None:
        if suffix == "":
            self.completed = True
        elif suffix == "info":
            self.info_modified = modified
        self.latest = max(self.latest, modified)

    def expired(self, changed_before: float) -> bool:
        return self.info_modified is not None and not self.completed and self.latest < changed_before


def contiguous(parts: Sequence[Part]) -> tuple[Part, ...]:
    """Parts 1..n up to the first gap: a part after a gap (its predecessor failed) counts for nothing."""
    kept: list[Part] = []
    for part in sorted(parts, key=lambda p: p.number):
        if part.number != len(kept) + 1:
            break
        kept.append(part)
    return tuple(kept)


class S3Error(OSError):
    """An S3 call failed; the handler answers it like any storage error (500 ERR_STORAGE)."""


def error_code(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_missing(error: BaseException) -> bool:
    return error_code(error) in _MISSING
