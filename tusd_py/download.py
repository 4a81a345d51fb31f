"""GET of a finished upload: headers decided here, bytes served by Starlette's
FileResponse (Range, If-Range, multipart/byteranges, 416).

Content-Type comes from the `filetype` metadata when it is a plain media type.
Content-Disposition is `inline` only for tusd's allow-list of types a browser
can show without running anything, `attachment` otherwise, with the
`filename` metadata made safe: no path, no quotes, no control characters, and
non-ASCII names as RFC 6266 / RFC 8187 `filename*=UTF-8''...`.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from starlette.responses import FileResponse

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


def etag(sha256: bytes) -> str:
    return f'"{sha256.hex()}"'


def none_match(if_none_match: str | None, tag: str) -> bool:
    """True when If-None-Match matches (weak comparison, RFC 9110 13.1.2): answer 304."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")]
    return tag in candidates


class UploadFileResponse(FileResponse):
    # Larger reads than Starlette's 64 KiB: one thread hop per 512 KiB.
    chunk_size = 512 * 1024


def file_response(
    path: os.PathLike[str] | str, stat: os.stat_result, media: str, headers: dict[str, str]
) -> FileResponse:
    return UploadFileResponse(path, stat_result=stat, headers=headers, media_type=media)
