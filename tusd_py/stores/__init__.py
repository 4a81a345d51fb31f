from .base import DataStore, UploadExists, UploadNotFound, UploadWriter
from .file import FileStore

__all__ = ["DataStore", "FileStore", "UploadExists", "UploadNotFound", "UploadWriter"]
