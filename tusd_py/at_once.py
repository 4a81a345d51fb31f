"""Requests answered inside the HTTP protocol, without waiting (http_protocol.py,
`asgi.TusApp.answer_now`; spec_notes/serving.md): a HEAD of an upload nobody holds, and
a creation whose whole body came with its headers. Each gives exactly the answer the
usual path (handler.py) would give, as header lines of a response without a body, or
None: the usual path then serves the request, and every request this cannot answer
exactly alike."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.requests import Request

from . import digests, protocol
from .asgi import header_lines
from .completion import recorded_digest
from .creation import Creation
from .errors import TusError
from .events import request_info
from .expiry import expires_at
from .info import UploadInfo
from .stores import ImmediateStore, UploadExists, UploadNotFound

if TYPE_CHECKING:
    from .handler import TusHandler

log = logging.getLogger("tusd_py")

TUS_VERSION_BYTES = protocol.TUS_VERSION.encode()
# Uploads whose HEAD answer is kept: W4 asks for 2,000 in turn.
SEEN_HEADS = 4096
# Request headers that change a HEAD's answer or what it must check: head() serves those.
HEAD_REFUSED = frozenset(
    (
        b"upload-draft-interop-version",  # the IETF draft (ietf.py)
        b"want-repr-digest",  # may mean hashing the whole file
        b"upload-metadata",  # its own size limit
    )
)

# Blocking hooks that may change, stop or answer a creation: create() runs them.
SHAPING_CREATION = ("pre-create", "post-receive", "pre-finish")


class AtOnce:
    def __init__(self, tus: TusHandler, store: ImmediateStore) -> None:
        self.tus = tus
        self.store = store
        # head()'s answers: upload id -> (lock generation, Upload-Expires as unix time,
        # header lines). ~0.4 KiB each.
        self._seen_heads: dict[str, tuple[bytes, float | None, bytes]] = {}

    def forget(self, upload_id: str) -> None:
        """A removed upload's kept answer goes with it (called by its lock's holder)."""
        self._seen_heads.pop(upload_id, None)

    # --- HEAD ----------------------------------------------------------------------

    def head(self, upload_id: str, request_headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """TusHandler.head()'s answer, the header lines of its 200. None when anything needs
        more than a few system calls or is not a plain 200: the lock is busy, the locker is
        remote, a hook or a completion must run, a header asks for more, or the answer is an
        error.

        The answer is kept with the lock's generation (Locker.hold_now) and given again
        while the generation holds: nobody changed the upload meanwhile."""
        tus = self.tus
        if tus.transfers.closing or tus.events.hooks.wants("pre-access"):
            return None
        resumable = None
        for name, value in request_headers:
            if name == b"tus-resumable":
                resumable = value
            elif name in HEAD_REFUSED:
                return None
        if (
            resumable != TUS_VERSION_BYTES
            or tus._headers_too_large(request_headers)
            or not protocol.is_valid_upload_id(upload_id)
        ):
            return None
        held = tus.locker.hold_now(upload_id)
        if held is None:
            return None
        release, generation = held
        try:
            seen = self._seen_heads.get(upload_id)
            if generation and seen is not None and seen[0] == generation:
                _, expires, lines = seen  # nobody took the lock the usual way since: unchanged
            else:
                fresh = self._head_of(self.store.info_now(upload_id))
                if fresh is None:
                    return None
                expires, lines = fresh
                if generation:
                    self._remember_head(upload_id, (generation, expires, lines))
        except UploadNotFound:
            return None
        finally:
            release()
        if expires is not None and time.time() >= expires:
            return None  # 410
        tus._request_counters["HEAD"].inc()
        return lines

    def _head_of(self, info: UploadInfo) -> tuple[float | None, bytes] | None:
        """head()'s answer for a loaded upload: when it expires, and the header lines."""
        if info.is_final or (info.is_complete and not info.verified):
            return None  # partial URLs need the request's host; completion must run
        digest = digests.format_repr_digest(recorded_digest(info)) if info.verified else ""
        lines = header_lines({**protocol.RESPONSE_HEADERS, **self.tus._head_headers(info, digest)})
        return None if lines is None else (expires_at(info, self.tus.config.expiration), lines)

    def _remember_head(self, upload_id: str, seen: tuple[bytes, float | None, bytes]) -> None:
        if len(self._seen_heads) >= SEEN_HEADS:
            del self._seen_heads[next(iter(self._seen_heads))]  # the oldest
        self._seen_heads[upload_id] = seen

    # --- POST ----------------------------------------------------------------------

    def create(self, request: Request, body: bytes) -> bytes | None:
        """TusHandler.create()'s answer for an upload whose whole body came with its headers:
        the header lines of its 201, or None when create() must serve it: a hook, a checksum
        or a concatenation is involved, or anything is not a plain 201.

        The upload is stored complete in one step (store.create_now): its bytes, then its
        only .info. It does not exist until that .info does, and nobody knows its id before
        this answer: no lock is held. The lock is made for later requests
        (Locker.prepare_new), so HEADs answered at once can be had for it."""
        tus = self.tus
        hooks = tus.events.hooks
        if (
            tus.transfers.closing
            or hooks.wants("pre-create")
            or hooks.wants("post-receive")
            or hooks.wants("pre-finish")
        ):
            return None
        headers = request.headers
        if headers.get("tus-resumable") != protocol.TUS_VERSION or "upload-draft-interop-version" in headers:
            return None
        try:
            tus._check_header_sizes(request)  # the usual path's limits: headers, metadata
            creation = Creation.of(headers, tus.config.disable_concatenation)
            size = creation.size()
            if size is not None:
                tus._check_max_size(size)
        except TusError:
            return None  # create() answers it
        if (
            not creation.with_body
            or creation.concat is not None
            or creation.declared
            or creation.checksum is not None
            or size != len(body)
            or creation.content_length != size
        ):
            return None
        upload_id = secrets.token_hex(16)
        lines = header_lines(
            {**protocol.RESPONSE_HEADERS, "Location": tus._url(request, upload_id), "Upload-Offset": str(size)}
        )
        if lines is None:
            return None
        try:
            tus.locker.prepare_new(upload_id)  # so HEADs answered at once know it
            info = self.store.create_now(UploadInfo(id=upload_id, size=size, metadata=creation.metadata), body)
        except (UploadExists, OSError) as error:
            log.info("POST %s: creating at once failed (%s), creating as usual", request.url.path, error)
            tus.locker.discard(upload_id)
            return None
        tus._request_counters["POST"].inc()
        event_request = request_info(request)
        tus.events.created(replace(info, offset=0, finished=False), event_request)
        tus.metrics.bytes_received.inc(size)
        tus.events.finished_now(info, event_request)
        expires = expires_at(info, tus.config.expiration)
        if expires is not None:
            lines += header_lines({"Upload-Expires": protocol.format_http_date(expires)}) or b""
        return lines
