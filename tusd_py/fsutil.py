"""Small filesystem helpers shared by the file store and the file locker."""

from __future__ import annotations

import contextlib
import os


def remove_if_present(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
