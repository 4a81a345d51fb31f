from .base import Locker
from .file import FileLocker
from .memory import MemoryLocker

__all__ = ["FileLocker", "Locker", "MemoryLocker"]
