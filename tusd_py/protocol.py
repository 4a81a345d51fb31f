"""Pure tus 1.0.x header rules: parsing, validation and formatting.

Nothing here does I/O or awaits. Every function takes header values as
strings (or None when the header is absent) and either returns a parsed value
or raises `TusError` with the status the spec (or, where the spec is silent,
tusd) gives. See spec_notes/ for the choices made where the spec is vague.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from .errors import TusError, bad_request

TUS_VERSION = "1.0.0"
SUPPORTED_VERSIONS = (TUS_VERSION,)
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
# On every response (X-Content-Type-Options: a body is never to be sniffed as a page).
RESPONSE_HEADERS = {"Tus-Resumable": TUS_VERSION, "X-Content-Type-Options": "nosniff"}

# tusd creates 32 lowercase hex ids; we accept any short URL-safe token so
# directories written by other tools stay reachable, but never '.', '/' or
# anything else that could step outside the upload directory.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_DIGITS = re.compile(r"[0-9]{1,19}")
MAX_INT64 = 2**63 - 1
# Metadata keys: printable ASCII without space or comma (spec: no spaces or
# commas, SHOULD be ASCII; control characters would be header smuggling).
_METADATA_KEY = re.compile(r"[!-+\--~]+")
_CHECKSUM_ALGORITHM = re.compile(r"[a-z0-9-]{1,32}")


def is_valid_upload_id(candidate: str) -> bool:
    return _UPLOAD_ID.fullmatch(candidate) is not None


def parse_int(value: str, *, code: str, name: str) -> int:
    """A non-negative integer header (tus core: 1*DIGIT), at most int64 as in tusd."""
    value = value.strip()
    if _DIGITS.fullmatch(value) is None or int(value) > MAX_INT64:
        raise bad_request(code, f"invalid {name} header: must be a non-negative integer")
    return int(value)


def check_tus_resumable(value: str | None) -> None:
    if value is None:
        raise TusError(412, "ERR_UNSUPPORTED_VERSION", "missing Tus-Resumable header", {"Tus-Version": TUS_VERSION})
    if value.strip() not in SUPPORTED_VERSIONS:
        raise TusError(
            412, "ERR_UNSUPPORTED_VERSION", f"unsupported version {value.strip()!r}", {"Tus-Version": TUS_VERSION}
        )


def parse_creation_length(upload_length: str | None, defer_length: str | None) -> int | None:
    """Upload-Length xor Upload-Defer-Length: 1. Returns the size, None when deferred."""
    if upload_length is not None and defer_length is not None:
        raise bad_request("ERR_AMBIGUOUS_UPLOAD_LENGTH", "Upload-Length and Upload-Defer-Length are both set")
    if defer_length is not None:
        if defer_length.strip() != "1":
            raise bad_request("ERR_INVALID_UPLOAD_LENGTH_DEFER", "Upload-Defer-Length must be 1")
        return None
    if upload_length is None:
        raise bad_request("ERR_INVALID_UPLOAD_LENGTH", "missing Upload-Length or Upload-Defer-Length header")
    return parse_int(upload_length, code="ERR_INVALID_UPLOAD_LENGTH", name="Upload-Length")


def parse_offset(value: str | None) -> int:
    if value is None:
        raise bad_request("ERR_INVALID_OFFSET", "missing Upload-Offset header")
    return parse_int(value, code="ERR_INVALID_OFFSET", name="Upload-Offset")


def parse_content_length(value: str | None) -> int | None:
    if value is None:
        return None
    return parse_int(value, code="ERR_INVALID_CONTENT_LENGTH", name="Content-Length")


def is_offset_octet_stream(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == OFFSET_OCTET_STREAM


# --- Upload-Metadata -------------------------------------------------------


def _decode_value(encoded: str, key: str) -> str:
    # Go's strict decoder (tusd) also refuses surplus padding such as `dmFs=`.
    if len(encoded) % 4:
        raise bad_request("ERR_INVALID_METADATA", f"value of metadata key {key!r} is not valid base64")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("ERR_INVALID_METADATA", f"value of metadata key {key!r} is not valid base64") from None
    # Values are arbitrary bytes; surrogateescape keeps them round-trippable.
    return raw.decode("utf-8", "surrogateescape")


def parse_metadata(header: str | None) -> dict[str, str]:
    """Decode Upload-Metadata into a key -> value map.

    Strict where the spec says MUST (non-empty unique keys without spaces or
    commas, base64 values); an empty or whitespace-only header means no
    metadata, because tuspy always sends one.
    """
    metadata: dict[str, str] = {}
    if header is None or not header.strip():
        return metadata
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise bad_request("ERR_INVALID_METADATA", f"malformed metadata pair {pair.strip()!r}")
        key = parts[0]
        if _METADATA_KEY.fullmatch(key) is None:
            raise bad_request("ERR_INVALID_METADATA", f"invalid metadata key {key!r}")
        if key in metadata:
            raise bad_request("ERR_INVALID_METADATA", f"duplicate metadata key {key!r}")
        metadata[key] = _decode_value(parts[1], key) if len(parts) == 2 else ""
    return metadata


def format_metadata(metadata: dict[str, str]) -> str:
    pairs = []
    for key, value in metadata.items():
        if value:
            raw = value.encode("utf-8", "surrogateescape")
            pairs.append(f"{key} {base64.b64encode(raw).decode('ascii')}")
        else:
            pairs.append(key)
    return ",".join(pairs)


# --- Upload-Checksum ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: str
    digest: bytes


def parse_upload_checksum(header: str | None, supported: tuple[str, ...]) -> Checksum | None:
    """`<algorithm> <base64 digest>`; 400 for a malformed header or unknown algorithm."""
    if header is None:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2 or _CHECKSUM_ALGORITHM.fullmatch(parts[0]) is None:
        raise bad_request("ERR_INVALID_CHECKSUM", "Upload-Checksum must be '<algorithm> <base64 digest>'")
    algorithm, encoded = parts
    if algorithm not in supported:
        raise bad_request("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", f"unsupported checksum algorithm {algorithm!r}")
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("ERR_INVALID_CHECKSUM", "Upload-Checksum digest is not valid base64") from None
    return Checksum(algorithm, digest)


# --- Upload-Concat ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Concat:
    is_partial: bool
    partial_urls: tuple[str, ...] = ()

    @property
    def is_final(self) -> bool:
        return not self.is_partial


def parse_concat(header: str | None) -> Concat | None:
    """`partial`, or `final;<url> <url> ...` (absolute or relative URLs)."""
    if header is None:
        return None
    value = header.strip()
    if value == "partial":
        return Concat(is_partial=True)
    kind, sep, urls = value.partition(";")
    if kind.strip() != "final" or not sep:
        raise bad_request("ERR_INVALID_CONCAT", "Upload-Concat must be 'partial' or 'final;<urls>'")
    partial_urls = tuple(urls.split())
    if not partial_urls:
        raise bad_request("ERR_INVALID_CONCAT", "Upload-Concat final lists no partial uploads")
    return Concat(is_partial=False, partial_urls=partial_urls)


def upload_id_from_url(url: str, base_path: str) -> str:
    """The upload id a partial-upload URL names: `<base>/<id>`, absolute or relative."""
    try:
        path = unquote(urlsplit(url).path)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise bad_request("ERR_INVALID_CONCAT", f"{url!r} is not a valid URL") from None
    if path.startswith(base_path):
        candidate = path[len(base_path) :]
    elif "/" not in path:
        candidate = path  # a bare id, relative to the creation URL
    else:
        raise bad_request("ERR_INVALID_CONCAT", f"{url!r} is not an upload URL of this server")
    if not is_valid_upload_id(candidate):
        raise bad_request("ERR_INVALID_CONCAT", f"{url!r} is not an upload URL of this server")
    return candidate


# --- Dates ----------------------------------------------------------------------


def format_http_date(timestamp: float) -> str:
    """RFC 9110 IMF-fixdate, as Upload-Expires requires."""
    return formatdate(timestamp, usegmt=True)
