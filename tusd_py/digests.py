"""Whole-file digests: what a client declares at creation, and what we report.

Pure parsing and formatting, no I/O. Two declaration forms are accepted:

- an `Upload-Metadata` key `checksum` = `<algo> <digest>` (oCIS/OpenCloud
  convention; Uppy, tus-js-client and tuspy can send it as plain metadata):
  algo case-insensitive md5/sha1/sha256/sha512, digest as hex or as base64 of
  the raw bytes;
- an RFC 9530 `Repr-Digest` header: a structured-field dictionary of
  `<algo>=:<base64>:` with the IANA names `sha-256`, `sha-512`, `md5`, `sha`.

Internally algorithms use the tus checksum names (`sha256`, ...).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping

from .checksum import ALGORITHMS
from .errors import TusError, bad_request

# Reported first when several digests are recorded and the client asks for none.
DEFAULT_ALGORITHM = "sha256"

# RFC 9530 names (IANA "Hash Algorithms for HTTP Digest Fields") <-> tus names.
_FROM_HTTP = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5", "sha": "sha1"}
_TO_HTTP = {tus: http for http, tus in _FROM_HTTP.items()}
_DIGEST_SIZE = {name: hashlib.new(ALGORITHMS[name]).digest_size for name in ALGORITHMS}
_HEX = re.compile(r"[0-9a-fA-F]+")
_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_WEIGHT = re.compile(r"[0-9]{1,2}")  # ASCII digits only: str.isdigit() admits superscripts

Digests = dict[str, bytes]


def _invalid(message: str) -> TusError:
    return bad_request("ERR_INVALID_DIGEST", message)


def _decode_digest(algorithm: str, text: str) -> bytes:
    size = _DIGEST_SIZE[algorithm]
    if len(text) == 2 * size and _HEX.fullmatch(text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{algorithm} digest is neither hex nor base64") from None
    if len(raw) != size:
        raise _invalid(f"{algorithm} digest must be {size} bytes")
    return raw


def parse_metadata_checksum(value: str) -> tuple[str, bytes]:
    """`<algo> <hex or base64 digest>` from the `checksum` metadata key."""
    parts = value.strip().split()
    if len(parts) != 2:
        raise _invalid("metadata checksum must be '<algorithm> <digest>'")
    algorithm = parts[0].lower().replace("-", "")
    if algorithm not in ALGORITHMS:
        raise bad_request("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", f"unsupported checksum algorithm {parts[0]!r}")
    return algorithm, _decode_digest(algorithm, parts[1])


def _dictionary_members(header: str) -> list[tuple[str, str]]:
    members = []
    for member in header.split(","):
        key, sep, value = member.strip().partition("=")
        key = key.strip()
        if not sep or _SF_KEY.fullmatch(key) is None:
            raise _invalid("Repr-Digest must be a dictionary of <algorithm>=:<base64>:")
        members.append((key, value.strip().split(";", 1)[0].strip()))
    return members


def parse_repr_digest(header: str) -> Digests:
    """RFC 9530 Repr-Digest. Unknown algorithms are ignored (RFC 9530 section 2),
    but at least one member must be one we can verify."""
    digests: Digests = {}
    unsupported = []
    for key, value in _dictionary_members(header):
        if len(value) < 2 or value[0] != ":" or value[-1] != ":":
            raise _invalid(f"Repr-Digest member {key!r} is not a byte sequence")
        algorithm = _FROM_HTTP.get(key)
        if algorithm is None:
            unsupported.append(key)
            continue
        try:
            raw = base64.b64decode(value[1:-1], validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"Repr-Digest member {key!r} is not valid base64") from None
        if len(raw) != _DIGEST_SIZE[algorithm]:
            raise _invalid(f"Repr-Digest {key} must be {_DIGEST_SIZE[algorithm]} bytes")
        digests[algorithm] = raw
    if not digests:
        raise bad_request("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", f"no supported algorithm in Repr-Digest: {unsupported}")
    return digests


def declared_digests(metadata_checksum: str | None, repr_digest: str | None) -> Digests:
    """Every digest the client declared at creation; all of them must match at completion."""
    declared: Digests = {}
    if metadata_checksum is not None:
        algorithm, digest = parse_metadata_checksum(metadata_checksum)
        declared[algorithm] = digest
    if repr_digest is not None:
        for algorithm, digest in parse_repr_digest(repr_digest).items():
            if declared.get(algorithm, digest) != digest:
                raise _invalid(f"the metadata checksum and Repr-Digest disagree on {algorithm}")
            declared[algorithm] = digest
    return declared


def wanted_algorithms(headers: Mapping[str, str]) -> list[str]:
    """The algorithms a request's Want-Repr-Digest asks for, most preferred first."""
    return parse_want_repr_digest(headers.get("want-repr-digest"))


def parse_want_repr_digest(header: str | None) -> list[str]:
    """Supported algorithms a client asks for, most preferred first (weight 0 = never)."""
    if header is None:
        return []
    weighted = []
    try:
        members = _dictionary_members(header)
    except TusError:
        return []  # a preference we cannot read is no preference
    for key, value in members:
        algorithm = _FROM_HTTP.get(key)
        if algorithm is not None and _WEIGHT.fullmatch(value) and 0 < int(value) <= 10:
            weighted.append((int(value), algorithm))
    return [algorithm for _, algorithm in sorted(weighted, key=lambda item: -item[0])]


def format_repr_digest(digests: Digests) -> str:
    return ", ".join(f"{_TO_HTTP[name]}=:{base64.b64encode(value).decode()}:" for name, value in digests.items())


def encode_map(digests: Digests) -> dict[str, str]:
    return {name: base64.b64encode(value).decode() for name, value in digests.items()}


def decode_map(document: object) -> Digests:
    """The JSON form in `.info` files; raises ValueError if malformed."""
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError("digests must be an object")
    try:
        return {str(k): base64.b64decode(str(v), validate=True) for k, v in document.items() if k in ALGORITHMS}
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"malformed digest: {exc}") from None
