"""One method per tus request: HTTP in, store calls out.

Every header is validated before the body is touched (uvicorn sends
`100 Continue` on the first read, so a rejected request costs no upload), and
every failure is a `TusError` rendered once, by `_render_error`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import anyio
from starlette.requests import Request
from starlette.responses import Response

from . import digests, download, protocol, urls
from .at_once import AtOnce
from .checksum import SUPPORTED as CHECKSUM_ALGORITHMS
from .completion import Completion
from .config import Config
from .creation import Creation, reject_checksum_trailer
from .errors import (
    TusError,
    bad_request,
    max_size_exceeded,
    method_not_allowed,
    mismatched_offset,
    server_shutdown,
    size_exceeded,
    storage_error,
    upload_expired,
    upload_not_found,
)
from .events import Events, request_info
from .expiry import expires_at, is_expired
from .hooks import HookResponse, HTTPResponse, RequestInfo
from .ietf import IetfHandler
from .info import UploadInfo
from .lockers import Locker
from .lockers.base import _ignore
from .metrics import METHODS as COUNTED_METHODS
from .socket_body import SOCKET_BODY_EXTENSION
from .stores import DataStore, ImmediateStore, UploadExists, UploadNotFound
from .transfer import Transfer, Transfers, receive_body

log = logging.getLogger("tusd_py")

Endpoint = Callable[[Request, str], Awaitable[Response]]


class TusHandler:
    def __init__(self, config: Config, store: DataStore, locker: Locker, events: Events) -> None:
        self.config = config
        self.store = store
        self.locker = locker
        self.events = events
        self.metrics = events.metrics
        # The labelled series, looked up once (labels() costs more than inc()).
        self._request_counters = {method: self.metrics.requests.labels(method) for method in COUNTED_METHODS}
        self.completion = Completion(store, remove=self._terminate)
        self.transfers = Transfers()
        # Requests answered inside the HTTP protocol (at_once.py): with a local store only.
        self.at_once = AtOnce(self, store) if isinstance(store, ImmediateStore) else None
        self.ietf: IetfHandler | None = IetfHandler(self) if config.enable_experimental_protocol else None
        extensions = ["creation", "creation-with-upload", "creation-defer-length"]
        if not config.disable_termination:
            extensions.append("termination")
        if config.expiration > 0:
            extensions.append("expiration")
        extensions.append("checksum")
        if not config.disable_concatenation:
            extensions.append("concatenation")
        self.extensions = tuple(extensions)
        self._upload_methods: dict[str, Endpoint] = {"OPTIONS": self.options, "HEAD": self.head, "PATCH": self.patch}
        if not config.disable_download:
            self._upload_methods["GET"] = self.get
        if not config.disable_termination:
            self._upload_methods["DELETE"] = self.delete

    def shutdown(self) -> None:
        """Stop every running body now (503, bytes kept) and any that starts later."""
        self.transfers.shutdown()

    # --- dispatch ----------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        """The creation URL (`/files/`): POST creates, OPTIONS describes."""
        methods: dict[str, Endpoint] = {"OPTIONS": self.options, "POST": self.create}
        return await self._dispatch(request, methods, "")

    async def upload(self, request: Request, upload_id: str) -> Response:
        """An upload URL (`/files/<id>`)."""
        return await self._dispatch(request, self._upload_methods, upload_id)

    async def _dispatch(self, request: Request, methods: dict[str, Endpoint], upload_id: str) -> Response:
        counter = self._request_counters.get(request.method)
        if counter is not None:  # tusd's methods
            # X-HTTP-Method-Override can carry any string: one series per value would grow
            # without bound. tusd, too, counts only the methods it knows.
            counter.inc()
        self.metrics.connections_open.inc()
        try:
            return await self._call(request, methods, upload_id)
        finally:
            self.metrics.connections_open.dec()

    async def _call(self, request: Request, methods: dict[str, Endpoint], upload_id: str) -> Response:
        try:
            if self.transfers.closing:
                # uvicorn may still hand us requests for a moment after SIGTERM.
                raise server_shutdown()
            self._check_header_sizes(request)
            if self.ietf is not None and "upload-draft-interop-version" in request.headers:
                # The IETF resumable-upload draft on the same URLs (ietf.py). tus 1.0
                # clients never send this header, so their responses cannot change.
                return await self.ietf.handle(request, upload_id)
            endpoint = methods.get(request.method)
            if endpoint is None:
                raise method_not_allowed(request.method, methods)
            if request.method not in ("OPTIONS", "GET"):
                # Required on every tus request but OPTIONS, which must ignore it.
                # GET is a plain HTTP download (browsers send no tus headers).
                protocol.check_tus_resumable(request.headers.get("tus-resumable"))
            if upload_id and not protocol.is_valid_upload_id(upload_id):
                # Never let a hostile id near the filesystem.
                raise upload_not_found()
            return await endpoint(request, upload_id)
        except TusError as error:
            return self._render_error(request, error)
        except OSError as error:
            # The store failed (disk full, permissions...). What was written is
            # on disk and counted; the client hears a clear code and can retry.
            log.error("%s %s: storage error: %s", request.method, request.url.path, error)
            return self._render_error(request, storage_error(error))

    def _headers_too_large(self, raw_headers: list[tuple[bytes, bytes]]) -> bool:
        # uvicorn's httptools parser sets no limit of its own.
        return sum(len(name) + len(value) for name, value in raw_headers) > self.config.max_header_size

    def _check_header_sizes(self, request: Request) -> None:
        if self._headers_too_large(request.scope["headers"]):
            raise TusError(431, "ERR_HEADERS_TOO_LARGE", f"request headers exceed {self.config.max_header_size} bytes")
        metadata = request.headers.get("upload-metadata")
        if metadata is not None and len(metadata) > self.config.max_metadata_size:
            raise bad_request("ERR_INVALID_METADATA", f"Upload-Metadata exceeds {self.config.max_metadata_size} bytes")

    def _render_error(self, request: Request, error: TusError) -> Response:
        self.metrics.errors.labels(str(error.status), error.code).inc()
        if error.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.url.path, error.status, error.code)
        body = b"" if request.method == "HEAD" else error.body()
        return _response(error.status, error.headers, body, "text/plain; charset=utf-8")

    # --- OPTIONS -----------------------------------------------------------------

    async def options(self, request: Request, upload_id: str) -> Response:
        # 200 rather than 204: some browsers reject a 204 preflight (tusd does the same).
        headers = {
            "Tus-Version": ",".join(protocol.SUPPORTED_VERSIONS),
            "Tus-Extension": ",".join(self.extensions),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        }
        if self.config.max_size > 0:
            headers["Tus-Max-Size"] = str(self.config.max_size)
        return _response(200, headers)

    # --- POST (creation, creation-with-upload, concatenation) ---------------------

    async def create(self, request: Request, _: str) -> Response:
        creation = Creation.of(request.headers, self.config.disable_concatenation)
        concat, with_body = creation.concat, creation.with_body
        event_request = request_info(request)

        if concat is not None and concat.is_final:
            if with_body and creation.content_length != 0:
                raise TusError(403, "ERR_MODIFY_FINAL", "a final upload cannot carry data")
            info, hook_response = await self._concatenate(
                request, concat, creation.metadata, creation.declared, event_request
            )
            return _response(201, {"Location": self._url(request, info.id)}, hook=hook_response)

        size = creation.size()
        if size is not None:
            self._check_max_size(size)
        info = UploadInfo(
            id=secrets.token_hex(16),
            size=size,
            metadata=creation.metadata,
            is_partial=concat is not None and concat.is_partial,
            declared_digests=creation.declared,
        )
        if with_body:
            self._check_body_fits(info, creation.content_length)  # before anything is created
        info, hook_response = await self.events.creating(info, event_request)
        info = await self._store_new(info)
        self.events.created(info, event_request)
        response_headers = {"Location": self._url(request, info.id)}
        transfer = Transfer()
        async with self._hold(info.id, transfer.release_requested):
            failure = None
            if with_body:
                try:
                    info, failure = await self._receive(
                        request, info, creation.content_length, creation.checksum, transfer, event_request
                    )
                except OSError as error:  # the upload exists: say where, so it can be resumed
                    raise storage_error(error, response_headers) from None
                if transfer.terminate or (failure is not None and failure.status == 460):
                    # Stopped by a post-receive hook, or nothing worth keeping (and a
                    # client that got no Location cannot resume it anyway).
                    await self._remove(info, event_request)
                    raise failure or transfer.reason or upload_not_found()
            # Created complete (Upload-Length: 0, or the whole body in the POST).
            info, finish_response = await self._finish_if_complete(info, event_request, remove_on_mismatch=True)
        if failure is not None:
            failure.headers.update(response_headers)
            raise failure
        if with_body:
            response_headers["Upload-Offset"] = str(info.offset)
        self._add_expires(response_headers, info)
        return _response(201, response_headers, hook=finish_response or hook_response)

    async def _store_new(self, info: UploadInfo) -> UploadInfo:
        try:
            return await self.store.create(info)
        except UploadExists:
            raise TusError(409, "ERR_UPLOAD_EXISTS", f"an upload with id {info.id} already exists") from None

    async def _concatenate(
        self,
        request: Request,
        concat: protocol.Concat,
        metadata: dict[str, str],
        declared: digests.Digests,
        event_request: RequestInfo,
    ) -> tuple[UploadInfo, HTTPResponse | None]:
        if len(concat.partial_urls) > self.config.max_concat_partials:
            raise bad_request(
                "ERR_INVALID_CONCAT", f"a final upload may list at most {self.config.max_concat_partials} partials"
            )
        partial_ids = [protocol.upload_id_from_url(url, self.config.base_path) for url in concat.partial_urls]
        async with AsyncExitStack() as locks:
            # Sorted, each once: two finals naming the same partials cannot deadlock.
            for partial_id in sorted(set(partial_ids)):
                await locks.enter_async_context(self._hold(partial_id, interrupt=False))
            partials = {partial_id: await self._load(partial_id) for partial_id in set(partial_ids)}
            for partial in partials.values():
                await self.events.accessing(partial, event_request)
            for partial_id, partial in partials.items():
                if not partial.is_partial:
                    raise bad_request("ERR_INVALID_CONCAT", f"upload {partial_id} is not a partial upload")
                if not partial.is_complete:
                    raise bad_request("ERR_UPLOAD_NOT_FINISHED", f"partial upload {partial_id} is not finished")
            size = sum(partials[partial_id].size or 0 for partial_id in partial_ids)
            self._check_max_size(size)
            # Partial metadata is never inherited (concatenation: SHALL NOT).
            final = UploadInfo(
                id=secrets.token_hex(16),
                size=size,
                metadata=metadata,
                is_final=True,
                partial_uploads=tuple(partial_ids),
                declared_digests=declared,
            )
            final, hook_response = await self.events.creating(final, event_request)
            hashers = self.completion.resume(final)  # fresh: the final is at offset 0
            observers = list((hashers or {}).values())
            try:
                final = await self.store.concatenate(final, [partials[pid] for pid in partial_ids], observers)
            except UploadExists:
                raise TusError(409, "ERR_UPLOAD_EXISTS", f"an upload with id {final.id} already exists") from None
            self.completion.keep(final.id, final.offset, hashers)
        self.events.created(final, event_request)
        async with self._hold(final.id):
            final, finish_response = await self._finish_if_complete(final, event_request, remove_on_mismatch=True)
        return final, finish_response or hook_response

    # --- HEAD ----------------------------------------------------------------------

    async def head(self, request: Request, upload_id: str) -> Response:
        await self._check_access(upload_id, request)
        async with self._hold(upload_id):
            info = await self._load(upload_id)
            wanted = digests.wanted_algorithms(request.headers)
            headers = self._head_headers(info, await self.repr_digest(info, wanted) if info.verified else "")
        if info.is_final:
            partial_urls = " ".join(self._url(request, partial_id) for partial_id in info.partial_uploads)
            headers["Upload-Concat"] = f"final;{partial_urls}"
        return _response(200, headers)

    def _head_headers(self, info: UploadInfo, repr_digest: str) -> dict[str, str]:
        """A HEAD's description of the upload, but a final upload's partial URLs."""
        headers = {"Cache-Control": "no-store", "Upload-Offset": str(info.offset)}
        if repr_digest:
            headers["Repr-Digest"] = repr_digest
        if info.size is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(info.size)
        if info.metadata:
            headers["Upload-Metadata"] = protocol.format_metadata(info.metadata)
        if info.is_partial:
            headers["Upload-Concat"] = "partial"
        self._add_expires(headers, info)
        return headers

    # --- PATCH -------------------------------------------------------------------------

    async def patch(self, request: Request, upload_id: str) -> Response:
        headers = request.headers
        if not protocol.is_offset_octet_stream(headers.get("content-type")):
            raise TusError(
                415, "ERR_INVALID_CONTENT_TYPE", f"PATCH requires Content-Type: {protocol.OFFSET_OCTET_STREAM}"
            )
        offset = protocol.parse_offset(headers.get("upload-offset"))
        upload_length = headers.get("upload-length")
        declared_size = (
            None
            if upload_length is None
            else protocol.parse_int(upload_length, code="ERR_INVALID_UPLOAD_LENGTH", name="Upload-Length")
        )
        content_length = protocol.parse_content_length(headers.get("content-length"))
        checksum = protocol.parse_upload_checksum(headers.get("upload-checksum"), CHECKSUM_ALGORITHMS)
        reject_checksum_trailer(request.headers)
        event_request = request_info(request)

        transfer = Transfer()
        await self._check_access(upload_id, request)
        async with self._hold(upload_id, transfer.release_requested):
            info = await self._load(upload_id)
            if info.is_final:
                raise TusError(403, "ERR_MODIFY_FINAL", "a final upload cannot be modified")
            if offset != info.offset:
                raise mismatched_offset(info.offset)
            if declared_size is not None:
                info = await self._declare_size(info, declared_size)
            info, failure = await self._receive(request, info, content_length, checksum, transfer, event_request)
            if transfer.terminate:
                await self._remove(info, event_request)  # a post-receive hook stopped it (tusd)
            else:
                # The bytes that completed the upload count even if the request then failed.
                info, finish_response = await self._finish_if_complete(info, event_request, remove_on_mismatch=False)
        if failure is not None:
            raise failure
        response_headers = {"Upload-Offset": str(info.offset)}
        self._add_expires(response_headers, info)
        return _response(204, response_headers, hook=finish_response)

    async def _remove(self, info: UploadInfo, event_request: RequestInfo) -> None:
        await self._terminate(info.id)
        self.events.terminated(info, event_request)

    async def _terminate(self, upload_id: str) -> None:
        """The one way an upload goes: its bytes and info, its hash state, its lock file.
        Called by the lock's holder."""
        await self.store.terminate(upload_id)
        self.completion.forget(upload_id)
        if self.at_once is not None:
            self.at_once.forget(upload_id)
        self.locker.discard(upload_id)

    async def _declare_size(self, info: UploadInfo, size: int) -> UploadInfo:
        if info.size is not None:
            if size != info.size:
                raise bad_request("ERR_INVALID_UPLOAD_LENGTH", "Upload-Length cannot be changed once set")
            return info
        if size < info.offset:
            raise bad_request("ERR_INVALID_UPLOAD_LENGTH", "Upload-Length is smaller than the current offset")
        self._check_max_size(size)
        info = info.with_size(size)
        await self.store.update_info(info)
        return info

    async def _receive(
        self,
        request: Request,
        info: UploadInfo,
        content_length: int | None,
        checksum: protocol.Checksum | None,
        transfer: Transfer,
        event_request: RequestInfo,
    ) -> tuple[UploadInfo, TusError | None]:
        """Stream the body into the upload; returns the new info and the error to answer, if any."""
        limit, too_long = self._check_body_fits(info, content_length)
        running = self.completion.resume(info)
        progress = _Progress(self, info, event_request, transfer)
        with self.transfers.track(transfer):
            received = await receive_body(
                self.store,
                info,
                request.receive,
                limit=limit,
                too_long=too_long,
                idle_timeout=self.config.network_timeout,
                checksum=checksum,
                running=running,
                transfer=transfer,
                on_progress=progress.update,
                socket_body=request.scope.get("extensions", {}).get(SOCKET_BODY_EXTENSION),
            )
        self.metrics.bytes_received.inc(received.info.offset - info.offset)
        progress.final(received.info.offset)
        self.completion.keep(info.id, received.info.offset, received.hashers)
        return received.info, received.failure

    async def _finish_if_complete(
        self, info: UploadInfo, event_request: RequestInfo, *, remove_on_mismatch: bool
    ) -> tuple[UploadInfo, HTTPResponse | None]:
        """Verify an upload that just completed and run its finish events (pre-finish may shape the response)."""
        if not info.is_complete or info.verified:
            return info, None
        info = await self.completion.finish(info, remove_on_mismatch=remove_on_mismatch)
        return info, await self.events.finished(info, event_request)

    # --- GET (download) ------------------------------------------------------------------

    async def get(self, request: Request, upload_id: str) -> Response:
        # Looked at without the lock first, so a download never interrupts an upload.
        info = await self._get_info(upload_id, settle=False)
        if not info.verified:
            async with self._hold(upload_id, interrupt=False):
                info = await self._load(upload_id)
        await self.events.accessing(info, request_info(request))
        if not info.verified:
            raise TusError(404, "ERR_UPLOAD_NOT_FINISHED", "upload is not finished, nothing to download yet")
        try:
            stored = await self.store.stored_bytes(upload_id)
        except UploadNotFound:
            raise upload_not_found() from None
        tag = download.etag(stored)
        if download.none_match(request.headers.get("if-none-match"), tag):
            return _response(304, {"ETag": tag})
        media = download.media_type(info.metadata.get("filetype"))
        headers = {
            "Tus-Resumable": protocol.TUS_VERSION,
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": download.content_disposition(media, info.metadata.get("filename")),
            "ETag": tag,
        }
        wanted = digests.wanted_algorithms(request.headers)
        if self.completion.must_read(info, wanted):
            # Computing a digest reads every byte and records it: never beside a DELETE.
            async with self._hold(upload_id, interrupt=False):
                info = await self._load(upload_id)
                digest = await self.repr_digest(info, wanted)
        else:
            digest = await self.repr_digest(info, wanted)
        if digest:
            headers["Repr-Digest"] = digest
        return download.response(stored, request.headers, media, headers)

    async def repr_digest(self, info: UploadInfo, wanted: list[str]) -> str:
        """Repr-Digest of a verified upload: the first `wanted` algorithm (computed once if
        need be: the caller holds the lock), else a recorded digest, else "" (none known)."""
        return digests.format_repr_digest(await self.completion.digests_for(info, wanted))

    # --- DELETE ------------------------------------------------------------------------

    async def delete(self, request: Request, upload_id: str) -> Response:
        event_request = request_info(request)
        await self._check_access(upload_id, request)
        async with self._hold(upload_id):
            info = await self._get_info(upload_id)
            hook_response = await self.events.terminating(info, event_request)
            await self._terminate(upload_id)
        self.events.terminated(info, event_request)
        return _response(204, hook=hook_response)

    async def _check_access(self, upload_id: str, request: Request) -> None:
        """pre-access, before competing for the lock: a refused request must not interrupt a
        running one. The request's event data is built only when a hook will see it."""
        if self.events.hooks.wants("pre-access"):
            await self.events.accessing(await self._get_info(upload_id, settle=False), request_info(request))

    # --- helpers -----------------------------------------------------------------------

    @asynccontextmanager
    async def _hold(
        self, upload_id: str, on_release_request: Callable[[], None] = _ignore, *, interrupt: bool = True
    ) -> AsyncIterator[None]:
        """The upload's lock. An id with no upload is refused before a lock file exists
        for it; `_terminate` removes the lock file with the upload."""
        if not await self.store.exists(upload_id):
            raise upload_not_found()
        async with self.locker.hold(upload_id, on_release_request, interrupt=interrupt):
            yield

    async def _get_info(self, upload_id: str, *, settle: bool = True) -> UploadInfo:
        try:
            info = await self.store.get_info(upload_id, settle=settle)
        except UploadNotFound:
            raise upload_not_found() from None
        if is_expired(info, self.config.expiration):
            raise upload_expired()
        return info

    async def _load(self, upload_id: str) -> UploadInfo:
        """The upload's info, for a holder of its lock.

        A complete upload whose completion never ran to the end (a crash during
        completion, or an upload written by tusd) is verified here first, so
        an upload that failed its declared checksum never looks complete.
        """
        info = await self._get_info(upload_id)
        if info.is_complete and not info.verified:
            try:
                info = await self.completion.finish(info, remove_on_mismatch=info.is_final)
            except TusError:
                info = await self._get_info(upload_id)  # reset to offset 0, or gone
        return info

    def _check_body_fits(self, info: UploadInfo, content_length: int | None) -> tuple[int, TusError]:
        """How many more bytes the upload takes, and the error for a body longer than that.

        A Content-Length that already says too much is refused before a byte is read.
        """
        if info.size is not None:
            limit, too_long = info.size - info.offset, size_exceeded()
        elif self.config.max_size > 0:
            limit, too_long = self.config.max_size - info.offset, max_size_exceeded(self.config.max_size)
        else:
            limit, too_long = protocol.MAX_INT64 - info.offset, size_exceeded()
        if content_length is not None and content_length > limit:
            raise too_long
        return limit, too_long

    def _check_max_size(self, size: int) -> None:
        if self.config.max_size > 0 and size > self.config.max_size:
            raise max_size_exceeded(self.config.max_size)

    def _add_expires(self, headers: dict[str, str], info: UploadInfo) -> None:
        deadline = expires_at(info, self.config.expiration)
        if deadline is not None:
            headers["Upload-Expires"] = protocol.format_http_date(deadline)

    def _url(self, request: Request, upload_id: str) -> str:
        host, scheme = urls.host_and_scheme(
            request.scope.get("scheme", "http"),  # what request.url.scheme says, without parsing a URL
            request.headers.get("host") or request.url.netloc,
            request.headers,
            self.config.behind_proxy,
        )
        return urls.upload_url(scheme, host, self.config.base_path, upload_id)


class _Progress:
    """post-receive hooks while a body streams: at most one per -progress-hooks-interval
    while the offset moves, and one when the request ends (tusd)."""

    def __init__(self, handler: TusHandler, info: UploadInfo, event_request: RequestInfo, transfer: Transfer) -> None:
        self.events = handler.events
        self.interval = handler.config.progress_hooks_interval
        self.info = info
        self.request = event_request
        self.transfer = transfer
        self.reported = info.offset
        self.enabled = handler.events.hooks.wants("post-receive")
        self.last = anyio.current_time() if self.enabled else 0.0  # anyio calls cost ~2 us each

    def update(self, offset: int) -> None:
        if self.enabled and anyio.current_time() - self.last >= self.interval:
            self.final(offset)

    def final(self, offset: int) -> None:
        if self.enabled and offset != self.reported:
            self.reported, self.last = offset, anyio.current_time()
            self.events.received(replace(self.info, offset=offset), self.request, self._answer)

    def _answer(self, response: HookResponse) -> None:
        if response.stop_upload:
            stopped = TusError(400, "ERR_UPLOAD_STOPPED", "upload has been stopped by server")
            self.transfer.stop(response.http.merge_into(stopped), terminate=True)


def _response(
    status: int,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    media_type: str | None = None,
    hook: HTTPResponse | None = None,
) -> Response:
    all_headers = dict(protocol.RESPONSE_HEADERS)
    all_headers.update(headers or {})
    if hook is not None:
        # A pre-create / pre-finish / pre-terminate hook may shape the response (tusd's MergeWith).
        status = hook.status or status
        all_headers.update(hook.headers)
        body = hook.body.encode() or body
    return Response(body, status_code=status, headers=all_headers, media_type=media_type)
