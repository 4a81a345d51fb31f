"""The ASGI application: lifespan, then per request one pass over the headers
(method override, CORS origin, request id), routing, the endpoint, the log line.

One flat layer instead of Starlette's application, its two error middlewares,
our three (method override, request log, CORS) and a router: those layers cost
~8 us of a ~86 us HEAD in the app alone (bench/asgi_micro.py), and every tus
request pays them. Endpoints still take a Starlette `Request` and
return a `Response`, so the status is known before anything is sent and
neither CORS nor the request log needs to wrap `send`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from . import request_log
from .cors import CorsPolicy

log = logging.getLogger("tusd_py")

Endpoint = Callable[[Request], Awaitable[Response]]
UploadEndpoint = Callable[[Request, str], Awaitable[Response]]  # with the upload id from the path
# An upload's HEAD answered without waiting: (upload id, request headers) -> header lines or None.
HeadNow = Callable[[str, list[tuple[bytes, bytes]]], "bytes | None"]
# A creation whose whole body came with its headers, answered without waiting: (request,
# body) -> header lines of its 201 or None.
CreateNow = Callable[[Request, bytes], "bytes | None"]

# What uvicorn refuses in a header value (h11 too): control characters but tab.
_UNSENDABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_lines(headers: dict[str, str]) -> bytes | None:
    """Response headers as HTTP/1.1 lines (`name: value\\r\\n`, names lowercased, as uvicorn
    sends them), for an answer given inside the protocol; None if a value could not be sent
    (a control character, or not latin-1), which the usual path then refuses as it does."""
    if _UNSENDABLE.search("".join(headers.values())) is not None:
        return None
    try:
        return "".join([f"{name.lower()}: {value}\r\n" for name, value in headers.items()]).encode("latin-1")
    except UnicodeEncodeError:
        return None


class IndexedHeaders(Headers):
    """Starlette's Headers with a dict for lookups. A tus request reads a dozen
    headers; the base class scans the list for each (and raises a KeyError for
    every absent one): ~15 us of a creation."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        # The first of a repeated header wins, as in Headers.__getitem__.
        self._index = {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(self._list)}

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()]

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._index.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index


class TusRequest(Request):
    @property
    def headers(self) -> Headers:
        if not hasattr(self, "_indexed_headers"):
            self._indexed_headers = IndexedHeaders(self.scope)
        return self._indexed_headers


class Routes:
    """Where a path goes: the creation URL, an upload URL, or one of the fixed pages."""

    def __init__(
        self,
        base_path: str,
        collection: Endpoint,
        upload: UploadEndpoint,
        upload_head_now: HeadNow | None = None,
        create_now: CreateNow | None = None,
    ) -> None:
        self.base_path = base_path
        # tusd answers both /files and /files/ for creation.
        self.collection_paths = {base_path, base_path.rstrip("/") or "/"}
        self.collection = collection
        self.upload = upload
        self.upload_head_now = upload_head_now
        self.create_now = create_now
        self.pages: dict[str, Endpoint] = {}  # exact paths answering GET and HEAD (metrics, greeting)

    def add_page(self, path: str, endpoint: Endpoint) -> None:
        self.pages.setdefault(path, endpoint)

    def upload_id_of(self, path: str) -> str | None:
        """The upload id when `path` is an upload URL: under the base path, and neither the
        creation URL nor a page (those come first)."""
        if path in self.pages or path in self.collection_paths or not path.startswith(self.base_path):
            return None
        return path[len(self.base_path) :]

    async def serve(self, request: Request, path: str) -> Response:
        page = self.pages.get(path)
        if page is not None:
            if request.method not in ("GET", "HEAD"):
                return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "GET, HEAD"})
            return await page(request)
        if path in self.collection_paths:
            return await self.collection(request)
        upload_id = self.upload_id_of(path)
        if upload_id is not None:
            return await self.upload(request, upload_id)
        return PlainTextResponse("Not Found", 404)


class TusApp:
    def __init__(
        self,
        routes: Routes,
        cors: CorsPolicy | None,
        lifespan: Callable[[], AbstractAsyncContextManager[None]],
    ) -> None:
        self.routes = routes
        self.cors = cors
        self.lifespan_context = lifespan  # background tasks run inside it

    def answer_now(self, scope: Scope, body: bytes | None = None) -> tuple[int, bytes] | None:
        """A response given inside the HTTP protocol, with no task and no ASGI cycle
        (http_protocol.py), for the requests that need no waiting: a HEAD of an upload
        that is not locked (the request a client sends to resume, and the one it repeats
        most), and a creation whose whole body came with its headers (`body`, every small
        upload). Status and header lines (`header_lines`) of a response without a body, or
        None: the request is then served as usual, and so are all the ones this cannot
        answer exactly alike."""
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        routes = self.routes
        if scope.get("root_path"):
            return None
        if method == "HEAD" and body is None:
            upload_id = routes.upload_id_of(path)
            if routes.upload_head_now is None or upload_id is None or (request_id := self._plain(scope)) is None:
                return None
            status, lines = 200, routes.upload_head_now(upload_id, scope["headers"])
        elif method == "POST" and body is not None:
            if (
                routes.create_now is None
                or path not in routes.collection_paths
                or (request_id := self._plain(scope)) is None
            ):
                return None
            status, lines = 201, routes.create_now(TusRequest(scope), body)
        else:
            return None
        if lines is None:
            return None
        request_log.write(method, path, status, started, request_id)
        return status, lines

    def _plain(self, scope: Scope) -> str | None:
        """The request id of a request with neither a method override nor a CORS origin
        (None otherwise: those take the usual path)."""
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-http-method-override" or (name == b"origin" and self.cors is not None):
                return None
        return request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        origin: str | None = None
        preflight = False
        request_id = ""
        for name, value in scope["headers"]:  # one pass, cheaper than a Headers per concern
            if name == b"x-http-method-override":
                # tus core: the header MUST be taken as the method. A preflight stays a
                # preflight, so CORS keeps working.
                override = value.decode("latin-1").strip().upper()
                if override and scope["method"] != "OPTIONS":
                    method = override
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight = scope["method"] == "OPTIONS"
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
        if method != scope["method"]:
            scope = {**scope, "method": method}
        path = scope["path"]
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):  # mounted under a prefix
            path = path[len(root_path) :]

        status = 500
        try:
            if origin is not None and self.cors is not None and not self.cors.allows(origin):
                response = self.cors.forbidden()
            else:
                try:
                    response = await self.routes.serve(TusRequest(scope, receive), path)
                except Exception:
                    # Endpoints turn every expected failure into a tus error; this is a bug.
                    log.exception("%s %s: unhandled error", method, path)
                    response = PlainTextResponse("Internal Server Error", 500)
                if origin is not None and self.cors is not None:
                    self.cors.decorate(response, origin, preflight)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            request_log.write(method, scope["path"], status, started, request_id)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        started = False
        try:
            async with self.lifespan_context():
                started = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except BaseException as error:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": str(error)})
            raise
        await send({"type": "lifespan.shutdown.complete"})
