from .base import DataStore, UploadNotFound, UploadWriter
from .file import FileStore

__all__ = ["DataStore", "FileStore", "UploadNotFound", "UploadWriter"]
