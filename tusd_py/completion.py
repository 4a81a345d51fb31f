"""Whole-file digests: hashed while bytes arrive, verified when an upload completes.

Only the algorithms a client declared are hashed while bytes arrive: hashing
every byte costs as much CPU as storing it (sha-256 took W1 from ~1,300 to
~870 MB/s). A digest nobody declared is computed when a client first asks for
it (Want-Repr-Digest), from the stored bytes, and recorded.

Each upload in progress in this process keeps running hashers, positioned at
the offset they have seen. A request resumes them only if the stored offset
is still that offset; otherwise (restart, another worker wrote meanwhile, a
failed write) the state is lost and completion re-reads the stored bytes
once. Checksummed requests hash into copies, kept only when they commit.

At completion every declared digest must match. If one does not, the
completing request answers 460 and the upload must never look complete
again (tus-js-client reports success when HEAD shows offset == length): a
regular upload is reset to offset 0 so the client can send it again, an
upload created in one request (creation-with-upload, a final
concatenation) is removed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace

from .checksum import Hasher, new_hasher
from .digests import DEFAULT_ALGORITHM, Digests
from .errors import checksum_mismatch
from .info import UploadInfo
from .stores import DataStore

Hashers = dict[str, Hasher]
log = logging.getLogger("tusd_py")


class Completion:
    def __init__(self, store: DataStore, remove: Callable[[str], Awaitable[None]], capacity: int = 4096) -> None:
        self.store = store
        self.remove = remove  # the handler's removal: bytes, info, hash state and lock file
        self.capacity = capacity
        self._running: OrderedDict[str, tuple[int, Hashers]] = OrderedDict()

    def resume(self, info: UploadInfo) -> Hashers | None:
        """Hashers that have seen exactly the stored bytes, or None if that state was lost."""
        if not info.declared_digests:
            return {}  # nothing to hash
        offset, hashers = self._running.pop(info.id, (-1, {}))
        if offset == info.offset:
            return hashers
        if info.offset == 0:
            return {name: new_hasher(name) for name in info.declared_digests}
        return None

    def keep(self, upload_id: str, offset: int, hashers: Hashers | None) -> None:
        if not hashers:
            return
        self._running[upload_id] = (offset, hashers)
        while len(self._running) > self.capacity:  # bounded: a lost state only costs a re-read
            self._running.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        self._running.pop(upload_id, None)

    async def finish(self, info: UploadInfo, *, remove_on_mismatch: bool) -> UploadInfo:
        """Verify a complete upload and record its digests; raises 460 on a mismatch."""
        hashers = self.resume(info)  # {} when nothing was declared
        algorithms = list(info.declared_digests)
        if hashers is not None and all(name in hashers for name in algorithms):
            digests = {name: hashers[name].digest() for name in algorithms}
        else:
            # The running state was lost (restart, another worker, a failed write).
            log.info("re-reading upload %s (%d bytes) to compute its digests", info.id, info.offset)
            digests = await self.store.read_digests(info.id, algorithms)
        if any(digests[name] != expected for name, expected in info.declared_digests.items()):
            if remove_on_mismatch:
                await self.remove(info.id)
            else:
                await self.store.reset(info.id)
            raise checksum_mismatch("the upload's bytes do not match the declared checksum")
        info = replace(info, digests=digests, finished=True)
        await self.store.update_info(info)
        return info

    @staticmethod
    def must_read(info: UploadInfo, wanted: list[str]) -> bool:
        """Whether `digests_for` would read the stored bytes to answer `wanted`."""
        return bool(wanted) and wanted[0] not in info.digests

    async def digests_for(self, info: UploadInfo, wanted: list[str]) -> Digests:
        """The digest to report for a verified upload: the first wanted algorithm
        (computed now and recorded if it never was), else one already recorded, else none."""
        if not wanted:
            return recorded_digest(info)
        name = wanted[0]
        if self.must_read(info, wanted):
            computed = await self.store.read_digests(info.id, [name])
            await self.store.update_info(replace(info, digests={**info.digests, **computed}))
            return computed
        return {name: info.digests[name]}


def recorded_digest(info: UploadInfo) -> Digests:
    """The digest a verified upload reports when none is asked for: sha-256 if recorded, else any."""
    recorded = DEFAULT_ALGORITHM if DEFAULT_ALGORITHM in info.digests else next(iter(info.digests), None)
    return {} if recorded is None else {recorded: info.digests[recorded]}
