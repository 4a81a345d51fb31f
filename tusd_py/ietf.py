"""The IETF "Resumable Uploads for HTTP" draft (draft-ietf-httpbis-resumable-upload) beside tus 1.0.

Every request that carries `Upload-Draft-Interop-Version` comes here (see
`TusHandler._call`), on the creation URL and on upload URLs. Interop versions
3 to 8 are spoken (drafts -01 to -11):

    interop  drafts     what changes for us
    3        -01        `Upload-Incomplete` (?1 = not complete) instead of `Upload-Complete`
    4        -02        `Upload-Complete` (?1 = complete)
    5        -03        (200 allowed for HEAD; we keep 204)
    6        -04, -05   PATCH needs `application/partial-upload`; `Upload-Limit` (lifetime key
                        `expires`); problem types; append to a completed upload -> 400
    7        -06..-08   lifetime key `max-age`; an invalid `Upload-Length` is ignored, not refused;
                        appends must carry `Upload-Complete`; an incomplete append answers 204
    8        -09..-11   a non-empty append to a completed upload is an inconsistent length

Both protocols share one storage, lock, hook, expiration, metrics and
whole-file-digest machinery: everything below goes through the TusHandler's
helpers, so an upload created with one protocol can be continued, inspected
or downloaded with the other. Choices where the drafts leave room, and the
differences from tusd, are in spec_notes/ietf-draft.md.

One simplification, as in tusd: an upload is complete once its length is
known and its offset reached it (the tus model, shared with tus clients),
not only once a request said `Upload-Complete: ?1`.

No `104 (Upload Resumption Supported)` interim response is ever sent: ASGI
(uvicorn) can only send one response per request (the drafts allow this:
SHOULD "unless the server is not capable of sending interim responses").
Clients learn the upload URL from the final response ("careful" creation).
"""

from __future__ import annotations

import http
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from . import digests, protocol
from . import structured_fields as sf
from .checksum import ALGORITHMS, new_hasher
from .errors import TusError, bad_request, method_not_allowed, storage_error, upload_not_found
from .events import request_info
from .expiry import expires_at
from .hooks import HTTPResponse, RequestInfo
from .info import UploadInfo
from .transfer import Transfer

if TYPE_CHECKING:
    from .handler import TusHandler

log = logging.getLogger("tusd_py")

SUPPORTED_INTEROP_VERSIONS = (3, 4, 5, 6, 7, 8)
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_JSON = "application/problem+json"
_PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"
# Content-Digest algorithms (RFC 9530 names -> ours), strongest first: one is verified per request.
_CONTENT_DIGEST_ALGORITHMS = (("sha-512", "sha512"), ("sha-256", "sha256"), ("sha", "sha1"), ("md5", "md5"))
_DIGEST_SIZES = {name: len(new_hasher(name).digest()) for name in ALGORITHMS}


# --- problems (RFC 9457) ----------------------------------------------------------------


class Problem(TusError):
    """A TusError with an RFC 9457 problem type and extension members."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        problem_type: str = "about:blank",
        title: str | None = None,
        members: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message, headers)
        self.problem_type = problem_type
        self.title = title
        self.members = members or {}


def mismatching_offset(expected: int, provided: int) -> Problem:
    # I-APP-3: 409 with the correct Upload-Offset.
    return Problem(
        409,
        "ERR_MISMATCHED_OFFSET",
        f"mismatched offset: the upload is at offset {expected}, the request appends at {provided}",
        {"Upload-Offset": str(expected)},
        problem_type=_PROBLEM_TYPES + "mismatching-upload-offset",
        title="offset from request does not match offset of resource",
        members={"expected-offset": expected, "provided-offset": provided},
    )


def inconsistent_length(message: str) -> Problem:
    # I-3: length indicators that do not match each other or the recorded length.
    return Problem(
        400,
        "ERR_INCONSISTENT_UPLOAD_LENGTH",
        message,
        problem_type=_PROBLEM_TYPES + "inconsistent-upload-length",
        title="inconsistent length values for upload",
    )


def completed_upload() -> Problem:
    # I-APP-4 (-04 to -11): a completed upload is not appended to.
    return Problem(
        400,
        "ERR_UPLOAD_COMPLETED",
        "the upload is already complete and cannot be appended to",
        problem_type=_PROBLEM_TYPES + "completed-upload",
        title="upload is already completed",
    )


def _unsupported_version(value: str | None) -> Problem:
    return Problem(
        400,
        "ERR_UNSUPPORTED_INTEROP_VERSION",
        f"Upload-Draft-Interop-Version {value!r} is not supported; supported: "
        + ", ".join(map(str, SUPPORTED_INTEROP_VERSIONS)),
        members={"supported-versions": list(SUPPORTED_INTEROP_VERSIONS)},
    )


# --- the interop version and its header fields -------------------------------------------


def _sf_item(values: list[str]) -> Any:
    """The bare value of an Item field, or None if it is absent or not a valid Item."""
    if not values:
        return None
    try:
        value, _ = sf.parse_item(values)
    except sf.StructuredFieldError:
        return None
    return value


def _sf_non_negative_integer(values: list[str]) -> int | None:
    value = _sf_item(values)
    return value if sf.is_integer(value) and value >= 0 else None


class _Invalid(Exception):
    pass


@dataclass(frozen=True)
class Draft:
    """What one interop version means on the wire."""

    version: int

    @property
    def complete_field(self) -> str:
        return "Upload-Incomplete" if self.version == 3 else "Upload-Complete"

    @property
    def has_limits(self) -> bool:
        # Upload-Limit and application/partial-upload arrived with -04 (interop 6).
        return self.version >= 6

    @property
    def lifetime_key(self) -> str:
        return "max-age" if self.version >= 7 else "expires"

    def complete_header(self, complete: bool) -> dict[str, str]:
        if self.version == 3:
            return {"Upload-Incomplete": "?0" if complete else "?1"}
        return {"Upload-Complete": "?1" if complete else "?0"}

    def read_complete(self, request: Request) -> bool | None:
        """Whether the request says it completes the upload; None if the field is absent.

        Raises _Invalid for a value that is not a Boolean Item."""
        values = request.headers.getlist(self.complete_field.lower())
        if not values:
            return None
        value = _sf_item(values)
        if not isinstance(value, bool):
            raise _Invalid
        return not value if self.version == 3 else value


def _parse_draft(request: Request) -> Draft:
    values = request.headers.getlist("upload-draft-interop-version")
    value = _sf_item(values)
    if not sf.is_integer(value) or value not in SUPPORTED_INTEROP_VERSIONS:
        raise _unsupported_version(", ".join(values))
    return Draft(value)


# --- representation metadata --------------------------------------------------------------


def _split_parameters(value: str) -> list[str]:
    """`a; b="x;y"; c` -> ['a', 'b="x;y"', 'c'] (semicolons inside quotes kept)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def disposition_filename(value: str) -> str | None:
    """The file name of a Content-Disposition (RFC 6266): `filename*` (RFC 8187) wins over `filename`."""
    names: dict[str, str] = {}
    for parameter in _split_parameters(value)[1:]:
        key, sep, raw = parameter.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if not sep or key not in ("filename", "filename*"):
            continue
        if key == "filename*":
            charset, _, rest = raw.partition("'")
            _, _, encoded = rest.partition("'")
            try:
                names[key] = unquote(encoded, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                continue
        elif len(raw) >= 2 and raw[0] == raw[-1] == '"':
            names[key] = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        else:
            names[key] = raw
    return names.get("filename*") or names.get("filename") or None


def _media_type(value: str | None) -> str | None:
    if value is None:
        return None
    media = value.split(";", 1)[0].strip().lower()
    kind, slash, subtype = media.partition("/")
    if not slash or not kind or not subtype or any(c in media for c in ' \t"(),:<>?@[\\]{}='):
        return None
    return media


def content_digest(values: list[str]) -> protocol.Checksum | None:
    """RFC 9530 Content-Digest of one request's content: the strongest algorithm we support, else None."""
    if not values:
        return None
    try:
        members = sf.parse_dictionary(values)
    except sf.StructuredFieldError:
        raise bad_request(
            "ERR_INVALID_DIGEST", "Content-Digest must be a dictionary of <algorithm>=:<base64>:"
        ) from None
    for http_name, algorithm in _CONTENT_DIGEST_ALGORITHMS:
        member = members.get(http_name)
        if member is None:
            continue
        value = member[0]
        if not isinstance(value, bytes) or len(value) != _DIGEST_SIZES[algorithm]:
            raise bad_request(
                "ERR_INVALID_DIGEST", f"Content-Digest {http_name} must be a {_DIGEST_SIZES[algorithm]}-byte sequence"
            )
        return protocol.Checksum(algorithm, value)
    return None  # only algorithms we do not know: ignored (RFC 9530 section 2)


# --- one request's view of the length, completeness and content ----------------------------


@dataclass(frozen=True)
class _Content:
    complete: bool  # the request says the upload ends with its content
    content_length: int | None  # None: chunked
    upload_length: int | None  # the Upload-Length field
    checksum: protocol.Checksum | None  # from Content-Digest

    @property
    def may_have_body(self) -> bool:
        return self.content_length != 0


Endpoint = Callable[[Request, str, Draft], Awaitable[Response]]


class IetfHandler:
    def __init__(self, tus: TusHandler) -> None:
        self.tus = tus
        self.config = tus.config
        self._creation_methods: dict[str, Endpoint] = {
            "OPTIONS": self.options,
            # I-CRE-1: any request that carries content can start an upload.
            "POST": self.create,
            "PUT": self.create,
            "PATCH": self.create,
        }
        self._upload_methods: dict[str, Endpoint] = {"OPTIONS": self.options, "HEAD": self.head, "PATCH": self.append}
        if not self.config.disable_download:
            self._upload_methods["GET"] = self.download
        if not self.config.disable_termination:
            self._upload_methods["DELETE"] = self.cancel

    async def handle(self, request: Request, upload_id: str) -> Response:
        draft: Draft | None = None
        try:
            draft = _parse_draft(request)
            methods = self._upload_methods if upload_id else self._creation_methods
            endpoint = methods.get(request.method)
            if endpoint is None:
                raise method_not_allowed(request.method, methods)
            if upload_id and not protocol.is_valid_upload_id(upload_id):
                raise upload_not_found()  # never let a hostile id near the filesystem
            return await endpoint(request, upload_id, draft)
        except TusError as error:
            return self._render_error(request, error, draft)
        except OSError as error:
            log.error("%s %s: storage error: %s", request.method, request.url.path, error)
            return self._render_error(request, storage_error(error), draft)

    # --- OPTIONS (I-5) -------------------------------------------------------------------

    async def options(self, request: Request, _: str, draft: Draft) -> Response:
        headers: dict[str, str] = {}
        if draft.has_limits:
            headers["Upload-Limit"] = self._limits(draft, None)
            # -10/-11 require it for interop 8; harmless before.
            headers["Accept-Patch"] = PARTIAL_UPLOAD
        return self._response(draft, 200, headers)

    # --- creation (I-CRE-*) ------------------------------------------------------------

    async def create(self, request: Request, _: str, draft: Draft) -> Response:
        headers = request.headers
        if draft.version <= 6 and "upload-offset" in headers:
            raise bad_request("ERR_INVALID_OFFSET", "an upload creation request must not carry Upload-Offset")
        content = self._content(request, draft, creation=True)
        size = content.upload_length
        if content.complete and content.content_length is not None:
            # I-3: Upload-Complete: ?1 + Content-Length is a length indicator too.
            if size is not None and size != content.content_length:
                raise inconsistent_length(
                    f"Upload-Length {size} does not match the complete content's length {content.content_length}"
                )
            size = content.content_length
        if size is not None:
            self._check_max_size(draft, size)
        self._check_content_fits(draft, size, 0, content)
        metadata = self._metadata(request)
        declared = digests.declared_digests(metadata.get("checksum"), headers.get("repr-digest"))
        event_request = request_info(request)

        info = UploadInfo(id=secrets.token_hex(16), size=size, metadata=metadata, declared_digests=declared)
        info, hook_response = await self.tus.events.creating(info, event_request)
        info = await self.tus._store_new(info)
        self.tus.events.created(info, event_request)
        location = self.tus._url(request, info.id)
        transfer = Transfer()
        async with self.tus._hold(info.id, transfer.release_requested):
            info, finish_response = await self._transfer(
                request, info, draft, content, transfer, event_request, location=location
            )
            response_headers = await self._state_headers(request, info, draft)
        response_headers["Location"] = location
        return self._response(draft, 201, response_headers, finish_response or hook_response)

    # --- offset retrieval (I-OFF-*) --------------------------------------------------------

    async def head(self, request: Request, upload_id: str, draft: Draft) -> Response:
        if draft.version <= 6:
            # -01 to -05: a HEAD carrying the upload's state fields MUST be rejected.
            forbidden = ["upload-offset", draft.complete_field.lower()]
            if draft.version == 6:
                forbidden.append("upload-length")
            present = [name for name in forbidden if name in request.headers]
            if present:
                raise bad_request("ERR_INVALID_REQUEST", f"offset retrieval must not carry {', '.join(present)}")
        await self.tus._check_access(upload_id, request)
        async with self.tus._hold(upload_id):
            info = await self.tus._load(upload_id)
            headers = await self._state_headers(request, info, draft)
        headers["Cache-Control"] = "no-store"
        # 204 as in every draft's example (-01/-02 require it; later drafts allow 200 too).
        return self._response(draft, 204, headers)

    # --- append (I-APP-*) ---------------------------------------------------------------------

    async def append(self, request: Request, upload_id: str, draft: Draft) -> Response:
        headers = request.headers
        if draft.has_limits and _media_type(headers.get("content-type")) != PARTIAL_UPLOAD:
            # From -04 an append is a PATCH with application/partial-upload; 400 as tusd.
            raise TusError(
                400,
                "ERR_INVALID_CONTENT_TYPE",
                f"an upload append requires Content-Type: {PARTIAL_UPLOAD}",
                {"Accept-Patch": PARTIAL_UPLOAD},
            )
        offset = _sf_non_negative_integer(headers.getlist("upload-offset"))
        if offset is None:
            raise bad_request("ERR_INVALID_OFFSET", "an upload append requires Upload-Offset: <non-negative integer>")
        content = self._content(request, draft, creation=False)
        event_request = request_info(request)

        transfer = Transfer()
        await self.tus._check_access(upload_id, request)
        async with self.tus._hold(upload_id, transfer.release_requested):
            info = await self.tus._load(upload_id)
            if offset != info.offset:
                raise mismatching_offset(info.offset, offset)
            if info.is_complete:
                return await self._append_to_complete(request, info, draft, content)
            info = await self._record_length(draft, info, content)
            info, finish_response = await self._transfer(request, info, draft, content, transfer, event_request)
            response_headers = await self._state_headers(request, info, draft)
        if info.is_complete:
            # I-APP-5: the response the creation's target would have given for the whole
            # representation (201 + Location, as a creation with Upload-Complete: ?1), marked ?1.
            response_headers["Location"] = self.tus._url(request, info.id)
            return self._response(draft, 201, response_headers, finish_response)
        # I-APP-6: -01 to -05 say 201 for an incomplete append; -06 on show 204.
        return self._response(draft, 201 if draft.version <= 6 else 204, response_headers)

    async def _append_to_complete(
        self, request: Request, info: UploadInfo, draft: Draft, content: _Content
    ) -> Response:
        """I-APP-4: a completed upload is never modified."""
        if content.complete and content.content_length == 0 and content.upload_length in (None, info.size):
            # An empty Upload-Complete: ?1 append after all bytes arrived is how a client
            # completes an upload whose length it sent (I-APP-1); sent again, it gets the
            # final response again ([ED] "replay the final response").
            headers = await self._state_headers(request, info, draft)
            headers["Location"] = self.tus._url(request, info.id)
            return self._response(draft, 201, headers)
        if draft.version >= 8 and content.content_length != 0:
            # -10/-11: appending content to a completed upload is an inconsistent length.
            raise inconsistent_length(f"the upload is complete at {info.offset} bytes; nothing can be appended")
        raise completed_upload()

    async def _record_length(self, draft: Draft, info: UploadInfo, content: _Content) -> UploadInfo:
        """I-APP-7 / I-3: every length indicator must match the recorded length and the content
        must fit it (checked before a byte is read); a length not known before is recorded."""
        indicated = content.upload_length
        if indicated is not None and info.size is not None and indicated != info.size:
            raise inconsistent_length(f"Upload-Length {indicated} does not match the upload's length {info.size}")
        if content.complete and content.content_length is not None:
            by_content = info.offset + content.content_length
            known = info.size if info.size is not None else indicated
            if known is not None and by_content != known:
                raise inconsistent_length(
                    f"the content ends the upload at {by_content} bytes, but its length is {known}"
                )
            indicated = by_content
        if info.size is not None or indicated is None:
            self._check_content_fits(draft, info.size, info.offset, content)
            return info
        if indicated < info.offset:
            raise inconsistent_length(f"Upload-Length {indicated} is less than the offset {info.offset}")
        self._check_max_size(draft, indicated)
        self._check_content_fits(draft, indicated, info.offset, content)  # before anything is recorded
        return await self.tus._declare_size(info, indicated)

    # --- cancellation (I-CAN-*) -----------------------------------------------------------------

    async def cancel(self, request: Request, upload_id: str, draft: Draft) -> Response:
        if draft.version <= 6:
            forbidden = [name for name in ("upload-offset", draft.complete_field.lower()) if name in request.headers]
            if forbidden:
                raise bad_request("ERR_INVALID_REQUEST", f"upload cancellation must not carry {', '.join(forbidden)}")
        event_request = request_info(request)
        await self.tus._check_access(upload_id, request)
        # The lock interrupts a running append first (I-CAN-2).
        async with self.tus._hold(upload_id):
            info = await self.tus._get_info(upload_id)
            hook_response = await self.tus.events.terminating(info, event_request)
            await self.tus._terminate(upload_id)
        self.tus.events.terminated(info, event_request)
        return self._response(draft, 204, {}, hook_response)

    # --- download (not part of the draft) --------------------------------------------------------

    async def download(self, request: Request, upload_id: str, draft: Draft) -> Response:
        # A completed upload is a plain resource: GET works whatever the request carries.
        return await self.tus.get(request, upload_id)

    # --- shared steps ------------------------------------------------------------------------------

    def _content(self, request: Request, draft: Draft, *, creation: bool) -> _Content:
        try:
            complete = draft.read_complete(request)
        except _Invalid:
            raise bad_request(
                "ERR_INVALID_UPLOAD_COMPLETE", f"{draft.complete_field} must be a structured boolean (?0 or ?1)"
            ) from None
        if complete is None:
            if creation or draft.version >= 7:
                raise bad_request(
                    "ERR_INVALID_UPLOAD_COMPLETE", f"the request must carry {draft.complete_field}: ?0 or ?1"
                )
            # -01: an append without Upload-Incomplete ends the upload; -02 to -05 (and tusd):
            # an append without Upload-Complete does not.
            complete = draft.version == 3
        content_length = protocol.parse_content_length(request.headers.get("content-length"))
        return _Content(
            complete=complete,
            content_length=content_length,
            upload_length=self._upload_length(request, draft),
            checksum=content_digest(request.headers.getlist("content-digest")),
        )

    def _upload_length(self, request: Request, draft: Draft) -> int | None:
        values = request.headers.getlist("upload-length")
        if not values:
            return None
        length = _sf_non_negative_integer(values)
        if length is None and draft.version <= 6:
            raise bad_request("ERR_INVALID_UPLOAD_LENGTH", "Upload-Length must be a non-negative integer")
        # From -07 an invalid value "MUST cause the entire header field to be ignored".
        return length

    def _metadata(self, request: Request) -> dict[str, str]:
        """tus Upload-Metadata if sent (tus-js-client does), then the representation metadata
        of the creation request (I-CRE-11): Content-Type -> filetype, Content-Disposition -> filename."""
        headers = request.headers
        metadata = protocol.parse_metadata(headers.get("upload-metadata"))
        media = _media_type(headers.get("content-type"))
        if media is not None and media not in (PARTIAL_UPLOAD, protocol.OFFSET_OCTET_STREAM):
            metadata.setdefault("filetype", media)
        disposition = headers.get("content-disposition")
        filename = disposition_filename(disposition) if disposition else None
        if filename:
            metadata.setdefault("filename", filename)
        return metadata

    def _check_max_size(self, draft: Draft, size: int) -> None:
        if self.config.max_size > 0 and size > self.config.max_size:
            raise self._too_large(draft, f"the upload's length {size} exceeds the maximum size {self.config.max_size}")

    def _too_large(self, draft: Draft, message: str) -> TusError:
        # I-6: a 413 caused by our limits carries them.
        headers = {"Upload-Limit": self._limits(draft, None)} if draft.has_limits else {}
        return TusError(413, "ERR_MAX_SIZE_EXCEEDED", message, headers)

    def _check_content_fits(self, draft: Draft, size: int | None, offset: int, content: _Content) -> None:
        """Refuse, before reading a byte, content that its Content-Length already shows is too long."""
        if content.content_length is None:
            return
        end = offset + content.content_length
        if size is not None and end > size:
            raise inconsistent_length(f"the content would end the upload at {end} bytes, past its length {size}")
        if size is None:
            self._check_max_size(draft, end)

    async def _transfer(
        self,
        request: Request,
        info: UploadInfo,
        draft: Draft,
        content: _Content,
        transfer: Transfer,
        event_request: RequestInfo,
        *,
        location: str | None = None,
    ) -> tuple[UploadInfo, HTTPResponse | None]:
        """Receive the content (if any), then record the length it completes and finish the upload."""
        creating = location is not None
        start = info.offset
        failure = None
        if content.may_have_body:
            info, failure = await self.tus._receive(
                request, info, content.content_length, content.checksum, transfer, event_request
            )
        if transfer.terminate:
            # A post-receive hook stopped the upload: it is removed (as for tus).
            await self._remove(info, event_request)
            assert failure is not None
            raise failure
        if failure is not None:
            await self._fail(info, draft, failure, event_request, location)
        received = info.offset - start
        if content.content_length is not None and received != content.content_length:
            # Not the whole content: the upload must not be considered complete (I-CRE-9, I-APP-2).
            raise self._with_state(TusError(400, "ERR_UNEXPECTED_EOF", "request body ended early"), info, location)
        if content.complete:
            if info.size is None:
                info = await self.tus._declare_size(info, info.offset)
            elif info.offset != info.size:
                if creating:
                    await self._remove(info, event_request, notify=False)
                raise inconsistent_length(
                    f"{draft.complete_field} says the upload ends at {info.offset} bytes, but its length is {info.size}"
                )
        return await self._finish(info, draft, event_request)

    async def _fail(
        self, info: UploadInfo, draft: Draft, failure: TusError, event_request: RequestInfo, location: str | None
    ) -> None:
        """Answer a request whose content could not all be appended; always raises."""
        if failure.status == 460:
            # Content-Digest mismatch: the request's bytes were discarded (I-DIG-1).
            if location is not None:
                await self._remove(info, event_request, notify=False)
            raise self._with_state(
                TusError(
                    400, "ERR_CHECKSUM_MISMATCH", "the content does not match its Content-Digest; nothing was appended"
                ),
                info,
                location,
            )
        if failure.code == "ERR_UPLOAD_SIZE_EXCEEDED" and info.size is not None:
            # More content than the recorded length (I-APP-7): the resource is invalid from now on.
            await self._remove(info, event_request, notify=False)
            raise inconsistent_length(f"the content went past the upload's length {info.size}; the upload was removed")
        if failure.code == "ERR_MAX_SIZE_EXCEEDED":
            raise self._with_state(self._too_large(draft, failure.message), info, location)
        # Interrupted, timed out, cut: what arrived is kept (I-CRE-9, I-APP-2).
        if info.is_complete:
            await self._finish(info, draft, event_request)
        raise self._with_state(failure, info, location)

    def _with_state(self, error: TusError, info: UploadInfo, location: str | None) -> TusError:
        # -01 to -05: failure responses carry Upload-Offset while the upload is active; the
        # creation's Location lets a client resume (it got no 104).
        error.headers.setdefault("Upload-Offset", str(info.offset))
        if location is not None:
            error.headers.setdefault("Location", location)
        return error

    async def _finish(
        self, info: UploadInfo, draft: Draft, event_request: RequestInfo
    ) -> tuple[UploadInfo, HTTPResponse | None]:
        try:
            return await self.tus._finish_if_complete(info, event_request, remove_on_mismatch=True)
        except TusError as error:
            if error.status != 460:
                # The representation was fully received; processing it failed (a pre-finish
                # hook): I-APP-5 "MUST include Upload-Complete: ?1, error responses included".
                error.headers.update(draft.complete_header(True))
                raise
            # I-DIG-1: the representation does not match the Repr-Digest declared at creation.
            # The upload failed and is removed; the representation was fully received, so ?1.
            raise TusError(
                400,
                "ERR_CHECKSUM_MISMATCH",
                "the upload's content does not match the declared Repr-Digest; the upload was removed",
                draft.complete_header(True),
            ) from None

    async def _remove(self, info: UploadInfo, event_request: RequestInfo, *, notify: bool = True) -> None:
        if notify:
            await self.tus._remove(info, event_request)
        else:
            await self.tus._terminate(info.id)

    async def _state_headers(self, request: Request, info: UploadInfo, draft: Draft) -> dict[str, str]:
        """The upload's state (I-OFF-1): offset, completeness, length if known, limits, digest."""
        headers = {"Upload-Offset": str(info.offset), **draft.complete_header(info.is_complete)}
        if info.size is not None:
            headers["Upload-Length"] = str(info.size)
        if draft.has_limits:
            headers["Upload-Limit"] = self._limits(draft, info)
        if info.verified and (digest := await self.tus.repr_digest(info, digests.wanted_algorithms(request.headers))):
            # I-DIG-1: the digest of the completed representation (Want-Repr-Digest's choice).
            headers["Repr-Digest"] = digest
        return headers

    def _limits(self, draft: Draft, info: UploadInfo | None) -> str:
        """Upload-Limit (I-4): always `min-size=0` (no limit is `min-size=0`, never empty),
        `max-size` from -max-size (else the upload's own length, as tusd), and the remaining
        lifetime from -expiration while the upload can still expire."""
        members: dict[str, sf.BareItem] = {"min-size": 0}
        if self.config.max_size > 0:
            members["max-size"] = self.config.max_size
        elif info is not None and info.size is not None:
            members["max-size"] = info.size
        if self.config.expiration > 0:
            if info is None:
                members[draft.lifetime_key] = int(self.config.expiration)
            else:
                deadline = expires_at(info, self.config.expiration)
                if deadline is not None:
                    members[draft.lifetime_key] = max(0, int(deadline - time.time()))
        return sf.serialize_dictionary(members)

    # --- responses ------------------------------------------------------------------------------

    def _response(
        self, draft: Draft, status: int, headers: dict[str, str], hook: HTTPResponse | None = None
    ) -> Response:
        all_headers = {"X-Content-Type-Options": "nosniff", "Upload-Draft-Interop-Version": str(draft.version)}
        all_headers.update(headers)
        body = b""
        if hook is not None:
            # pre-create / pre-finish / pre-terminate may shape the response, as for tus.
            status = hook.status or status
            all_headers.update(hook.headers)
            body = hook.body.encode()
        return Response(body, status_code=status, headers=all_headers)

    def _render_error(self, request: Request, error: TusError, draft: Draft | None) -> Response:
        """Errors as RFC 9457 problem details (`code` carries the tusd-style ERR_* name)."""
        self.tus.metrics.errors.labels(str(error.status), error.code).inc()
        if error.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.url.path, error.status, error.code)
        headers = {"X-Content-Type-Options": "nosniff"}
        if draft is not None:
            headers["Upload-Draft-Interop-Version"] = str(draft.version)
        headers.update(error.headers)
        if error.custom_body is not None:  # a hook's HTTPResponse body
            body, media_type = error.custom_body, headers.pop("Content-Type", "text/plain; charset=utf-8")
        else:
            problem_type = getattr(error, "problem_type", "about:blank")
            title = getattr(error, "title", None) or _status_phrase(error.status)
            document = {
                "type": problem_type,
                "title": title,
                "status": error.status,
                "detail": error.message,
                "code": error.code,
                **getattr(error, "members", {}),
            }
            body, media_type = json.dumps(document).encode(), PROBLEM_JSON
        if request.method == "HEAD":
            body = b""
        return Response(body, status_code=error.status, headers=headers, media_type=media_type)


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
