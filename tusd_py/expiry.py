"""Expiration: unfinished uploads live `expiration` seconds past their last
stored byte (sliding, tus expiration extension), then answer 410 until the
sweeper removes their data and info."""

from __future__ import annotations

import logging
import time

import anyio

from .errors import TusError
from .info import UploadInfo
from .lockers import Locker
from .stores import DataStore, UploadNotFound

log = logging.getLogger("tusd_py")


def expires_at(info: UploadInfo, lifetime: float) -> float | None:
    """When the upload expires, or None if it never does."""
    if lifetime <= 0 or info.is_complete:
        return None
    return info.updated_at + lifetime


def is_expired(info: UploadInfo, lifetime: float, now: float | None = None) -> bool:
    deadline = expires_at(info, lifetime)
    return deadline is not None and (time.time() if now is None else now) >= deadline


async def sweep_once(store: DataStore, locker: Locker, lifetime: float) -> int:
    """Remove every expired unfinished upload; returns how many were removed."""
    removed = 0
    async for upload_id in store.expiry_candidates(time.time() - lifetime):
        try:
            async with locker.hold(upload_id, interrupt=False):
                try:
                    info = await store.get_info(upload_id)
                except UploadNotFound:
                    # Removed while we waited for its lock: the lock file our wait
                    # created must go too, as every holder that sees an upload gone does.
                    locker.discard(upload_id)
                    continue
                if is_expired(info, lifetime):
                    await store.terminate(upload_id)
                    locker.discard(upload_id)
                    removed += 1
        except (UploadNotFound, TusError):  # gone meanwhile, unreadable, or busy: next sweep
            continue
        except Exception:  # one broken entry must not stop the sweep for the others
            log.exception("expiration sweep: skipping upload %s", upload_id)
    return removed


async def run_sweeper(store: DataStore, locker: Locker, lifetime: float, interval: float) -> None:
    while True:
        try:
            removed = await sweep_once(store, locker, lifetime)
            if removed:
                log.info("expiration sweep removed %d upload(s)", removed)
        except Exception:  # a bad file must not stop future sweeps
            log.exception("expiration sweep failed")
        await anyio.sleep(interval)
