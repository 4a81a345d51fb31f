"""A creation request's headers, parsed and checked: the same rules for a creation
served as usual (`TusHandler.create`) and one answered at once (`at_once.py`).

Pure: nothing here does I/O. A malformed header raises `TusError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers

from . import digests, protocol
from .checksum import SUPPORTED as CHECKSUM_ALGORITHMS
from .errors import bad_request


@dataclass(frozen=True, slots=True)
class Creation:
    headers: Headers
    concat: protocol.Concat | None
    metadata: dict[str, str]
    declared: digests.Digests
    with_body: bool
    content_length: int | None
    checksum: protocol.Checksum | None

    @classmethod
    def of(cls, headers: Headers, disable_concatenation: bool) -> Creation:
        concat = None if disable_concatenation else protocol.parse_concat(headers.get("upload-concat"))
        metadata = protocol.parse_metadata(headers.get("upload-metadata"))
        declared = digests.declared_digests(metadata.get("checksum"), headers.get("repr-digest"))
        # Like tusd, a body whose Content-Type is not offset+octet-stream is not
        # upload data (some HTTP clients force a default type): it is ignored.
        with_body = protocol.is_offset_octet_stream(headers.get("content-type"))
        content_length = protocol.parse_content_length(headers.get("content-length"))
        checksum = (
            protocol.parse_upload_checksum(headers.get("upload-checksum"), CHECKSUM_ALGORITHMS) if with_body else None
        )
        reject_checksum_trailer(headers)
        return cls(headers, concat, metadata, declared, with_body, content_length, checksum)

    def size(self) -> int | None:
        """The upload's length, None when deferred (not for a final concatenation)."""
        return protocol.parse_creation_length(
            self.headers.get("upload-length"), self.headers.get("upload-defer-length")
        )


def reject_checksum_trailer(headers: Headers) -> None:
    # ASGI cannot deliver request trailers, so checksum-trailer is not offered.
    if "upload-checksum" in headers.get("trailer", "").lower():
        raise bad_request("ERR_INVALID_CHECKSUM", "checksums in trailers are not supported")
