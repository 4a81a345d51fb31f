from .base import DataStore, ImmediateStore, StoredBytes, UploadExists, UploadNotFound, UploadWriter
from .file import FileStore

__all__ = ["DataStore", "FileStore", "ImmediateStore", "StoredBytes", "UploadExists", "UploadNotFound", "UploadWriter"]
