from .base import Locker
from .memory import MemoryLocker

__all__ = ["Locker", "MemoryLocker"]
