"""UploadInfo, and the tusd `.info` JSON codec.

The JSON field names are tusd's `FileInfo` (`ID`, `Size`, `SizeIsDeferred`,
`Offset`, `MetaData`, `IsPartial`, `IsFinal`, `PartialUploads`, `Storage`), so
an upload directory written by tusd is served by us and the other way round.
Unknown fields are ignored on read, as Go's decoder does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from . import digests as digest_codec


@dataclass(frozen=True, slots=True)
class UploadInfo:
    id: str
    size: int | None  # None while the length is deferred
    offset: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: tuple[str, ...] = ()
    storage: dict[str, str] = field(default_factory=dict)
    # Whole-file digests the client declared at creation (all must match), the
    # digests computed (at completion: the declared algorithms; later, any a
    # client asked for), and whether completion ran (declared digests matched).
    # Not tusd fields: tusd ignores them, as we ignore fields we do not know.
    declared_digests: dict[str, bytes] = field(default_factory=dict)
    digests: dict[str, bytes] = field(default_factory=dict)
    finished: bool = False
    # When bytes were last stored (unix time); drives sliding expiration. The
    # store derives it (the file store from the data file's mtime); it is not
    # part of the .info document.
    updated_at: float = 0.0

    @property
    def size_is_deferred(self) -> bool:
        return self.size is None

    @property
    def is_complete(self) -> bool:
        return self.size is not None and self.offset == self.size

    def with_offset(self, offset: int) -> UploadInfo:
        return replace(self, offset=offset)

    def with_size(self, size: int) -> UploadInfo:
        return replace(self, size=size)

    @property
    def verified(self) -> bool:
        """Complete, and completion ran: any declared digests matched."""
        return self.is_complete and self.finished


def encode(info: UploadInfo) -> bytes:
    return json.dumps(document(info)).encode()


def document(info: UploadInfo) -> dict[str, Any]:
    """The tusd FileInfo JSON object (also the `Upload` of hook payloads)."""
    fields: dict[str, Any] = {
        "ID": info.id,
        "Size": info.size if info.size is not None else 0,
        "SizeIsDeferred": info.size_is_deferred,
        "Offset": info.offset,
        "MetaData": info.metadata,
        "IsPartial": info.is_partial,
        "IsFinal": info.is_final,
        "PartialUploads": list(info.partial_uploads) if info.is_final else None,
        "Storage": info.storage,
    }
    if info.declared_digests:
        fields["DeclaredDigests"] = digest_codec.encode_map(info.declared_digests)
    if info.digests:
        fields["Digests"] = digest_codec.encode_map(info.digests)
    if info.finished:
        fields["Finished"] = True
    return fields


def decode(raw: bytes, *, offset: int | None = None, updated_at: float = 0.0) -> UploadInfo:
    """Parse a `.info` document; raises ValueError if it is not one. A store that
    knows the offset (the file store: the data file's size) passes it, and when
    bytes were last stored, instead of building the info twice."""
    fields = json.loads(raw)
    if not isinstance(fields, dict) or not isinstance(fields.get("ID"), str):
        raise ValueError("not a tus upload info document")
    metadata = fields.get("MetaData") or {}
    storage = fields.get("Storage") or {}
    partial_uploads = fields.get("PartialUploads") or []
    if not isinstance(metadata, dict) or not isinstance(storage, dict) or not isinstance(partial_uploads, list):
        raise ValueError("malformed upload info document")
    try:
        deferred = bool(fields.get("SizeIsDeferred", False))
        return UploadInfo(
            id=fields["ID"],
            size=None if deferred else int(fields.get("Size", 0)),
            offset=int(fields.get("Offset", 0)) if offset is None else offset,
            metadata={str(k): "" if v is None else str(v) for k, v in metadata.items()},
            is_partial=bool(fields.get("IsPartial", False)),
            is_final=bool(fields.get("IsFinal", False)),
            partial_uploads=tuple(str(p) for p in partial_uploads),
            storage={str(k): str(v) for k, v in storage.items()},
            declared_digests=digest_codec.decode_map(fields.get("DeclaredDigests")),
            digests=(digests := digest_codec.decode_map(fields.get("Digests"))),
            # Before "Finished" existed, completion always recorded a sha256 digest.
            finished=bool(fields.get("Finished", False)) or bool(digests),
            updated_at=updated_at,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed upload info document: {exc}") from None
