"""asgi.TusApp in-process, for what no HTTP client can provoke: an endpoint that raises, the
lifespan protocol, a websocket scope. Routing and headers are covered over real HTTP elsewhere
(test_core, test_cors, test_fuzz_http, test_metrics); the cases here pin the layer's own contract."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from tusd_py.asgi import Routes, TusApp
from tusd_py.cors import CorsPolicy

Message = dict[str, Any]


async def collection(request: Request) -> Response:
    return PlainTextResponse(f"collection {request.method}")


async def upload(request: Request, upload_id: str) -> Response:
    if upload_id == "boom":
        raise RuntimeError("a bug")
    return PlainTextResponse(f"upload {upload_id} {request.method}")


async def page(request: Request) -> Response:
    return PlainTextResponse("page")


@asynccontextmanager
async def no_background() -> AsyncIterator[None]:
    yield


def make_app(cors: CorsPolicy | None = None, lifespan: Any = no_background) -> TusApp:
    routes = Routes("/files/", collection, upload)
    routes.add_page("/metrics", page)
    return TusApp(routes, cors, lifespan)


def call(
    app: TusApp, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
    }
    anyio.run(app, scope, receive, send)
    start = sent[0]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def test_routes_collection_uploads_pages_and_404() -> None:
    app = make_app()
    assert call(app, "POST", "/files/")[2] == b"collection POST"
    assert call(app, "POST", "/files")[2] == b"collection POST"  # tusd answers both
    assert call(app, "HEAD", "/files/abc")[2] == b"upload abc HEAD"
    assert call(app, "GET", "/metrics")[2] == b"page"
    status, headers, _ = call(app, "POST", "/metrics")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert call(app, "GET", "/elsewhere")[0] == 404


def test_method_override_is_the_method_except_for_a_preflight() -> None:
    app = make_app()
    assert call(app, "POST", "/files/abc", {"X-HTTP-Method-Override": " patch "})[2] == b"upload abc PATCH"
    assert call(app, "OPTIONS", "/files/abc", {"X-HTTP-Method-Override": "DELETE"})[2] == b"upload abc OPTIONS"
    assert call(app, "POST", "/files/abc", {"X-HTTP-Method-Override": ""})[2] == b"upload abc POST"


def test_an_endpoint_that_raises_gives_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="tusd_py"):
        status, _, body = call(make_app(), "PATCH", "/files/boom")
    assert (status, body) == (500, b"Internal Server Error")
    assert "unhandled error" in caplog.text and "a bug" in caplog.text


def test_cors_applies_to_every_response_and_refuses_other_origins() -> None:
    app = make_app(CorsPolicy(allow_origin=r"https://ok\.example"))
    status, headers, _ = call(app, "PATCH", "/files/boom", {"Origin": "https://ok.example"})
    assert status == 500 and headers["access-control-allow-origin"] == "https://ok.example"
    status, headers, body = call(app, "HEAD", "/files/abc", {"Origin": "https://evil.example"})
    assert status == 403 and body.startswith(b"ERR_ORIGIN_NOT_ALLOWED")
    assert "access-control-allow-origin" not in headers


def test_lifespan_runs_the_context_and_reports_a_failed_start() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def tracked() -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    @asynccontextmanager
    async def broken() -> AsyncIterator[None]:
        raise OSError("no upload directory")
        yield  # pragma: no cover

    def run(app: TusApp) -> list[str]:
        incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: list[str] = []

        async def receive() -> Message:
            return next(incoming)

        async def send(message: Message) -> None:
            sent.append(message["type"])

        try:
            anyio.run(app, {"type": "lifespan"}, receive, send)
        except OSError:
            sent.append("raised")
        return sent

    assert run(make_app(lifespan=tracked)) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == ["start", "stop"]
    assert run(make_app(lifespan=broken)) == ["lifespan.startup.failed", "raised"]


def test_a_websocket_is_closed() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    anyio.run(make_app(), {"type": "websocket", "path": "/files/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000}]
