"""GET of a finished upload: headers decided here, bytes served by Starlette's
FileResponse (Range, If-Range, multipart/byteranges, 416).

Content-Type comes from the `filetype` metadata when it is a plain media type.
Content-Disposition is `inline` only for tusd's allow-list of types a browser
can show without running anything, `attachment` otherwise, with the
`filename` metadata made safe: no path, no quotes, no control characters, and
non-ASCII names as RFC 6266 / RFC 8187 `filename*=UTF-8''...`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from urllib.parse import quote

import anyio
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from .protocol import TUS_VERSION
from .stores.base import StoredBytes

# tusd's allow-list (pkg/handler/unrouted_handler.go): shown inline, never scriptable.
INLINE_TYPES = frozenset(
    {
        "text/plain",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/bmp",
        "image/webp",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/webm",
        "audio/ogg",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "application/ogg",
    }
)
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")
_UNSAFE_IN_QUOTES = re.compile(r'[\x00-\x1f\x7f"\\%]')


def media_type(filetype: str | None) -> str:
    if filetype is not None and _MEDIA_TYPE.fullmatch(filetype.strip()):
        return filetype.strip().lower()
    return "application/octet-stream"


def safe_filename(name: str) -> str:
    """The last path component, without control characters."""
    # Metadata values are bytes kept with surrogate escapes; a name that is not
    # UTF-8 gets replacement characters rather than breaking the header.
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)
    return re.split(r"[/\\]", name)[-1].strip()


def content_disposition(media: str, filename: str | None) -> str:
    disposition = "inline" if media in INLINE_TYPES else "attachment"
    name = safe_filename(filename or "")
    if not name:
        return disposition
    ascii_name = _UNSAFE_IN_QUOTES.sub("_", name.encode("ascii", "replace").decode("ascii").replace("?", "_"))
    header = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def etag(stored: StoredBytes) -> str:
    """A strong validator from size and modification time: a finished upload's bytes
    never change, and a content hash would cost a read of every byte."""
    if stored.local_stat is not None:
        modified_ns = stored.local_stat.st_mtime_ns
    else:
        modified_ns = int(stored.modified * 1_000_000_000)
    return f'"{stored.size:x}-{modified_ns:x}"'


def none_match(if_none_match: str | None, tag: str) -> bool:
    """True when If-None-Match matches (weak comparison, RFC 9110 13.1.2): answer 304."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")]
    return tag in candidates


_RANGE_SPEC = re.compile(r"(\d*)-(\d*)")


def usable_range(header: str, size: int) -> str | None:
    """The Range header to act on (RFC 9110 section 14.2), or None to ignore it.

    A unit other than bytes or a malformed set is ignored (200, whole body);
    unsatisfiable ranges are dropped from a set that has satisfiable ones;
    a set with none is answered 416.
    """
    unit, sep, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not sep:
        return None
    kept = []
    for part in specs.split(","):
        match = _RANGE_SPEC.fullmatch(part.strip())
        if match is None or not (match[1] or match[2]):
            return None
        first, last = _number(match[1]), _number(match[2])
        if first is not None and last is not None and last < first:
            return None
        if first is not None and first < size:
            kept.append(f"{first}-{min(last, size - 1) if last is not None else ''}")
        elif first is None and last is not None and last > 0 and size > 0:
            kept.append(f"-{min(last, size)}")
    # Rewritten with numbers clamped to the size, so no huge number reaches the parser;
    # nothing satisfiable is answered 416.
    return "bytes=" + ",".join(kept) if kept else f"bytes={size}-"


def _number(digits: str) -> int | None:
    if not digits:
        return None
    # Longer than 18 digits is past any file (and int() refuses more than 4300 digits).
    return int(digits) if len(digits) <= 18 else 10**18


class UploadFileResponse(FileResponse):
    # Larger reads than Starlette's 64 KiB: one thread hop per 512 KiB.
    chunk_size = 512 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FileResponse builds its 416 (and 400 for a malformed Range) itself:
        # give those the headers every response of ours carries.
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Tus-Resumable", TUS_VERSION)
                headers.setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        request_range = Headers(scope=scope).get("range")
        if request_range is not None:
            usable = usable_range(request_range, self.stat_result.st_size if self.stat_result else 0)
            raw = [(k, v) for k, v in scope["headers"] if k != b"range"]
            if usable is not None:
                raw.append((b"range", usable.encode("latin-1")))
            scope = {**scope, "headers": raw}
        # Opened before a byte is sent (Starlette sends the 200 first, then opens): an upload
        # terminated since the handler looked (GET takes no lock) is a 404, not a cut 200.
        try:
            self._file = await anyio.open_file(self.path, "rb")
        except FileNotFoundError:
            body = b"ERR_UPLOAD_NOT_FOUND: upload not found\n"
            headers = {"Tus-Resumable": TUS_VERSION, "X-Content-Type-Options": "nosniff"}
            await Response(body, 404, headers, "text/plain; charset=utf-8")(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send_with_headers)
        finally:
            with anyio.CancelScope(shield=True):
                await self._file.aclose()

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        await self._file.seek(0)
        yield self._file


def response(stored: StoredBytes, request_headers: Headers, media: str, headers: dict[str, str]) -> Response:
    """A local file is served by FileResponse; object storage through ranged reads."""
    if stored.local_path is not None and stored.local_stat is not None:
        return UploadFileResponse(stored.local_path, stat_result=stored.local_stat, headers=headers, media_type=media)
    return stream_response(stored, request_headers, media, headers)


def single_range(request_headers: Headers, size: int, tag: str, modified: str) -> tuple[int, int] | None:
    """The one byte range [start, end) to serve, None for the whole body; raises
    RangeNotSatisfiable. A set of several ranges is answered whole (RFC 9110 14.2
    lets a server ignore Range), as is a Range whose If-Range no longer matches."""
    header = request_headers.get("range")
    if header is None:
        return None
    if_range = request_headers.get("if-range")
    if if_range is not None and if_range.strip() not in (tag, modified):
        return None
    usable = usable_range(header, size)
    if usable is None or "," in usable:
        return None
    first, _, last = usable.removeprefix("bytes=").partition("-")
    if not first:  # a suffix: the last N bytes
        return size - int(last), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, int(last) + 1 if last else size


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def stream_response(stored: StoredBytes, request_headers: Headers, media: str, headers: dict[str, str]) -> Response:
    """A download from a store without local files (object storage): ranged reads, streamed."""
    assert stored.read_range is not None
    modified = formatdate(stored.modified, usegmt=True)
    headers = {**headers, "Accept-Ranges": "bytes", "Last-Modified": modified}
    try:
        byte_range = single_range(request_headers, stored.size, headers.get("ETag", ""), modified)
    except RangeNotSatisfiable as unsatisfiable:
        headers = {**headers, "Content-Range": f"bytes */{unsatisfiable.size}"}
        return Response(b"", 416, headers)
    start, end = byte_range or (0, stored.size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
    return StreamingResponse(stored.read_range(start, end), status, headers, media_type=media)
