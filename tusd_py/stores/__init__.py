from .base import DataStore, StoredBytes, UploadExists, UploadNotFound, UploadWriter
from .file import FileStore

__all__ = ["DataStore", "FileStore", "StoredBytes", "UploadExists", "UploadNotFound", "UploadWriter"]
