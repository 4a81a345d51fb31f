"""The error catalogue: every failure a client can see, as tusd names it.

A `TusError` carries an HTTP status, a tusd-style `ERR_*` code and a short
message. It is raised anywhere below the HTTP edge and rendered once, in
`handler.py`, as `text/plain` `"ERR_CODE: message\n"` (no body on HEAD).

    TusError
      ├── 400  malformed or contradictory headers, interrupted bodies
      ├── 403  PATCH to a final upload, forbidden body on a final POST
      ├── 404  unknown (or invalid) upload id
      ├── 405  method not allowed on this path
      ├── 409  Upload-Offset does not match the stored offset
      ├── 410  upload expired
      ├── 412  missing or unsupported Tus-Resumable
      ├── 413  upload or body larger than allowed
      ├── 415  wrong PATCH Content-Type
      ├── 460  per-request checksum mismatch
      ├── 500  read timeout, connection reset, lock timeout, storage failure (clients retry 5xx)
      ├── 503  server shutting down, lock service (Redis) unreachable
      └── 507  disk full
"""

from __future__ import annotations

import errno
from collections.abc import Iterable


class TusError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        # A hook's HTTPResponse may replace the body (tusd's MergeWith).
        self.custom_body: bytes | None = None

    def body(self) -> bytes:
        if self.custom_body is not None:
            return self.custom_body
        return f"{self.code}: {self.message}\n".encode()


def bad_request(code: str, message: str) -> TusError:
    return TusError(400, code, message)


def method_not_allowed(method: str, allowed: Iterable[str]) -> TusError:
    message = f"method {method} is not allowed here"
    return TusError(405, "ERR_METHOD_NOT_ALLOWED", message, {"Allow": ", ".join(allowed)})


# Errors that carry no per-request detail, shared as ready-made factories.
def upload_not_found() -> TusError:
    return TusError(404, "ERR_UPLOAD_NOT_FOUND", "upload not found")


def upload_expired() -> TusError:
    return TusError(410, "ERR_UPLOAD_EXPIRED", "upload has expired")


def mismatched_offset(current: int) -> TusError:
    # The 409 carries the current offset (tus 1.1 draft; harmless in 1.0.x) so a
    # client can resume without another HEAD.
    return TusError(
        409,
        "ERR_MISMATCHED_OFFSET",
        f"mismatched offset, the upload is at offset {current}",
        {"Upload-Offset": str(current)},
    )


def size_exceeded(message: str = "upload's size exceeded") -> TusError:
    return TusError(413, "ERR_UPLOAD_SIZE_EXCEEDED", message)


def max_size_exceeded(max_size: int) -> TusError:
    return TusError(413, "ERR_MAX_SIZE_EXCEEDED", f"maximum size of {max_size} bytes exceeded")


def checksum_mismatch(message: str = "checksum mismatch, the request's bytes were discarded") -> TusError:
    return TusError(460, "ERR_CHECKSUM_MISMATCH", message)


def read_timeout() -> TusError:
    return TusError(500, "ERR_READ_TIMEOUT", "timeout while reading request body")


def unexpected_eof() -> TusError:
    return TusError(400, "ERR_UNEXPECTED_EOF", "request body ended early")


def lock_timeout() -> TusError:
    return TusError(500, "ERR_LOCK_TIMEOUT", "failed to acquire the upload's lock in time")


def upload_interrupted() -> TusError:
    return TusError(400, "ERR_UPLOAD_INTERRUPTED", "upload was interrupted by another request for it")


def storage_error(error: OSError, headers: dict[str, str] | None = None) -> TusError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return TusError(
            507, "ERR_STORAGE_FULL", "no space left to store the upload; the bytes stored so far are kept", headers
        )
    return TusError(500, "ERR_STORAGE", f"the upload could not be stored: {error.strerror or error}", headers)


def server_shutdown() -> TusError:
    return TusError(503, "ERR_SERVER_SHUTDOWN", "server is shutting down, the bytes received so far are stored")


def locker_unavailable() -> TusError:
    # 503: the upload is fine, the shared lock service is not; clients retry 5xx.
    return TusError(503, "ERR_LOCKER_UNAVAILABLE", "the upload lock service is unavailable, try again later")
