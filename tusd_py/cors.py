"""CORS for browser tus clients (Uppy, tus-js-client).

tusd's behaviour: nothing changes for requests without `Origin`; an origin
that does not match `-cors-allow-origin` gets 403 ERR_ORIGIN_NOT_ALLOWED; an
allowed origin is echoed (never `*`, so credentials can work) with
`Vary: Origin`. Preflights (OPTIONS + Access-Control-Request-Method) also get
Allow-Methods/-Headers/Max-Age, and still reach the tus OPTIONS handler, so
they carry Tus-Version and friends too. Every other response, errors
included, exposes the tus headers a client must read. `asgi.TusApp` applies
the policy to every response.

Starlette's CORSMiddleware answers preflights itself (400 for a disallowed
origin) and leaves disallowed simple requests alone; tus clients need the
403 and the tus headers, hence this small policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.responses import Response

ALLOW_METHODS = ("POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE", "PUT")  # PUT: IETF draft creation
ALLOW_HEADERS = (
    "Authorization", "Origin", "X-Requested-With", "X-Request-ID", "X-HTTP-Method-Override", "Content-Type",
    "Upload-Length", "Upload-Offset", "Tus-Resumable", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat",
    "Upload-Checksum", "Upload-Incomplete", "Upload-Complete", "Upload-Draft-Interop-Version", "Repr-Digest",
    "Want-Repr-Digest", "Content-Digest", "Content-Disposition", "Range", "If-Range", "If-None-Match",
)  # fmt: skip
EXPOSE_HEADERS = (
    "Upload-Offset", "Location", "Upload-Length", "Tus-Version", "Tus-Resumable", "Tus-Max-Size", "Tus-Extension",
    "Tus-Checksum-Algorithm", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Upload-Expires",
    "Upload-Incomplete", "Upload-Complete", "Upload-Draft-Interop-Version", "Upload-Limit", "Repr-Digest",
    "ETag", "Content-Range", "Content-Disposition", "Accept-Patch",
)  # fmt: skip


def _join(defaults: Sequence[str], extra: str) -> str:
    # tusd appends the flag's comma-separated list to its defaults.
    return ", ".join([*defaults, *(item.strip() for item in extra.split(",") if item.strip())])


class CorsPolicy:
    def __init__(
        self,
        *,
        allow_origin: str = ".*",
        allow_credentials: bool = False,
        allow_methods: str = "",
        allow_headers: str = "",
        expose_headers: str = "",
        max_age: str = "86400",
    ) -> None:
        # Anchored, unlike Go's MatchString in tusd: `https://a\.example` must not
        # also admit `https://a.example.evil.org`.
        self.allow_origin = re.compile(allow_origin)
        self.allow_credentials = allow_credentials
        self.allow_methods = _join(ALLOW_METHODS, allow_methods)
        self.allow_headers = _join(ALLOW_HEADERS, allow_headers)
        self.expose_headers = _join(EXPOSE_HEADERS, expose_headers)
        self.max_age = max_age

    def allows(self, origin: str) -> bool:
        return self.allow_origin.fullmatch(origin) is not None

    def decorate(self, response: Response, origin: str, preflight: bool) -> None:
        """Add the CORS headers for an allowed `origin` to a response about to be sent."""
        headers = response.headers  # edits response.raw_headers in place
        headers["Access-Control-Allow-Origin"] = origin
        headers.add_vary_header("Origin")
        if self.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if preflight:
            headers["Access-Control-Allow-Methods"] = self.allow_methods
            headers["Access-Control-Allow-Headers"] = self.allow_headers
            headers["Access-Control-Max-Age"] = self.max_age
        else:
            headers["Access-Control-Expose-Headers"] = self.expose_headers

    @staticmethod
    def forbidden() -> Response:
        return Response(
            b"ERR_ORIGIN_NOT_ALLOWED: origin is not allowed\n",
            403,
            headers={"Tus-Resumable": "1.0.0", "Vary": "Origin"},
            media_type="text/plain; charset=utf-8",
        )
