from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Locker
from .file import FileLocker
from .memory import MemoryLocker

if TYPE_CHECKING:
    from .redis import RedisLocker

__all__ = ["FileLocker", "Locker", "MemoryLocker", "RedisLocker"]


def __getattr__(name: str) -> Any:
    # Imported on first use: a server that doesn't use Redis doesn't load redis-py.
    if name == "RedisLocker":
        from .redis import RedisLocker

        return RedisLocker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
