"""tusd-py: a tus 1.0 resumable-upload server, a drop-in for tusd."""

from .app import create_app
from .config import Config
from .errors import TusError
from .info import UploadInfo
from .lockers import Locker, MemoryLocker
from .stores import DataStore, FileStore, UploadNotFound

__all__ = [
    "Config",
    "DataStore",
    "FileStore",
    "Locker",
    "MemoryLocker",
    "TusError",
    "UploadInfo",
    "UploadNotFound",
    "create_app",
]
__version__ = "0.1.0"
