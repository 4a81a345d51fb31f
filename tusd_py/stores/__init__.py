from .base import DataStore, ImmediateReads, StoredBytes, UploadExists, UploadNotFound, UploadWriter
from .file import FileStore

__all__ = ["DataStore", "FileStore", "ImmediateReads", "StoredBytes", "UploadExists", "UploadNotFound", "UploadWriter"]
