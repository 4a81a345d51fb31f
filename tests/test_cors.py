"""CORS, as browser tus clients (Uppy, tus-js-client) need it.

Preflights on the creation URL and on upload URLs are answered 200 with the
allowed methods and tus request headers; every real response (errors too)
names the allowed origin and exposes the tus response headers a script must
read. Requests without `Origin` get no CORS headers at all; an origin the
`-cors-allow-origin` regex (whole origin) does not match gets 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server

ORIGIN = "https://app.example"

TUS_REQUEST_HEADERS = (
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Concat",
    "Upload-Defer-Length",
    "Content-Type",
    "X-HTTP-Method-Override",
    "X-Requested-With",
    "X-Request-ID",
    "Authorization",
)
DEFAULT_METHODS = ("POST", "HEAD", "PATCH", "DELETE", "GET", "OPTIONS")
EXPOSED_HEADERS = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Upload-Concat",
    "Upload-Defer-Length",
    "Tus-Version",
    "Tus-Resumable",
    "Tus-Max-Size",
    "Tus-Extension",
    "Tus-Checksum-Algorithm",
    "Repr-Digest",
)
ALLOWED_ORIGIN_REGEX = r"https?://allowed\.example(:\d+)?"


def listed(value: str | None) -> set[str]:
    """A comma-separated header value as a set of lower-cased items."""
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


def covers(value: str | None, names: tuple[str, ...]) -> bool:
    """Whether a comma-separated header lists every name (case-insensitively)."""
    return listed(value) >= {name.lower() for name in names}


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def preflight(client: httpx.Client, url: str, method: str, origin: str = ORIGIN) -> httpx.Response:
    return client.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(name.lower() for name in TUS_REQUEST_HEADERS),
        },
    )


def upload_url(client: httpx.Client, server: TusServer) -> str:
    return create(client, server, 10)


def assert_exposes_tus_headers(response: httpx.Response, origin: str = ORIGIN) -> None:
    assert response.headers.get("access-control-allow-origin") == origin
    assert "origin" in listed(response.headers.get("vary"))  # the answer depends on Origin: caches must know
    assert covers(response.headers.get("access-control-expose-headers"), EXPOSED_HEADERS)


# --- preflight ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["creation", "upload"])
@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "HEAD"])
def test_preflight_allows_every_tus_method_and_header(
    server: TusServer, client: httpx.Client, target: str, method: str
) -> None:
    url = server.url if target == "creation" else upload_url(client, server)
    response = preflight(client, url, method)
    assert 200 <= response.status_code < 300
    assert response.headers["access-control-allow-origin"] == ORIGIN  # echoed, never "*"
    assert "origin" in listed(response.headers.get("vary"))
    assert covers(response.headers["access-control-allow-methods"], DEFAULT_METHODS)
    assert covers(response.headers["access-control-allow-headers"], TUS_REQUEST_HEADERS)
    assert int(response.headers["access-control-max-age"]) == 86400
    assert "access-control-allow-credentials" not in response.headers  # only with -cors-allow-credentials


def test_preflight_still_carries_the_tus_options_headers(server: TusServer, client: httpx.Client) -> None:
    # T-CORE-24: OPTIONS describes the server; a preflight is an OPTIONS too.
    response = preflight(client, server.url, "POST")
    assert response.status_code == 200
    assert response.headers["tus-version"] == "1.0.0"
    assert "creation" in listed(response.headers["tus-extension"])
    assert response.headers["tus-resumable"] == "1.0.0"


def test_plain_options_with_origin_is_not_a_preflight(server: TusServer, client: httpx.Client) -> None:
    # Without Access-Control-Request-Method it is an ordinary tus OPTIONS (a "real" response).
    response = client.options(server.url, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert_exposes_tus_headers(response)
    assert "access-control-allow-methods" not in response.headers


# --- real responses, successes and errors ------------------------------------------------------


def test_upload_flow_responses_name_the_origin_and_expose_tus_headers(server: TusServer, client: httpx.Client) -> None:
    origin = {"Origin": ORIGIN}
    created = client.post(server.url, headers={**TUS, **origin, "Upload-Length": "5", "Upload-Metadata": "k dg=="})
    assert created.status_code == 201
    assert_exposes_tus_headers(created)
    url = created.headers["location"]
    patched = patch(client, url, 0, b"hello", **origin)
    assert patched.status_code == 204
    assert_exposes_tus_headers(patched)
    described = client.head(url, headers={**TUS, **origin})
    assert described.status_code == 200
    assert_exposes_tus_headers(described)
    deleted = client.delete(url, headers={**TUS, **origin})
    assert deleted.status_code == 204
    assert_exposes_tus_headers(deleted)


ErrorRequest = Callable[[httpx.Client, TusServer, dict[str, str]], httpx.Response]
ERROR_REQUESTS: dict[str, tuple[int, ErrorRequest]] = {
    "400 bad Upload-Length": (
        400,
        lambda c, s, h: c.post(s.url, headers={**TUS, **h, "Upload-Length": "-1"}),
    ),
    "404 unknown upload": (
        404,
        lambda c, s, h: c.head(s.url + "0" * 32, headers={**TUS, **h}),
    ),
    "409 mismatched offset": (
        409,
        lambda c, s, h: patch(c, create(c, s, 10), 3, b"abc", **h),
    ),
    "412 no Tus-Resumable": (
        412,
        lambda c, s, h: c.post(s.url, headers={**h, "Upload-Length": "1"}),
    ),
    "405 unknown method": (
        405,
        lambda c, s, h: c.put(s.url, headers={**TUS, **h}),
    ),
}


@pytest.mark.parametrize("case", list(ERROR_REQUESTS))
def test_error_responses_carry_cors_headers(server: TusServer, client: httpx.Client, case: str) -> None:
    # A script can read the status and the tus headers of a failure only if they are exposed.
    status, request = ERROR_REQUESTS[case]
    response = request(client, server, {"Origin": ORIGIN})
    assert response.status_code == status
    assert_exposes_tus_headers(response)


def test_no_cors_headers_without_origin(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 5)
    responses = [
        client.options(server.url, headers={"Access-Control-Request-Method": "POST"}),
        client.post(server.url, headers={**TUS, "Upload-Length": "1"}),
        patch(client, url, 0, b"hello"),
        head(client, url),
        client.head(server.url + "0" * 32, headers=TUS),
    ]
    for response in responses:
        assert cors_headers(response) == {}, (response.request.method, response.status_code)


# --- -cors-allow-origin ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    srv = start_server(tmp_path_factory.mktemp("cors-origin") / "uploads", "-cors-allow-origin", ALLOWED_ORIGIN_REGEX)
    yield srv
    srv.stop()


@pytest.mark.parametrize("origin", ["https://allowed.example", "http://allowed.example:8080"])
def test_allowed_origin_is_echoed(origin_server: TusServer, client: httpx.Client, origin: str) -> None:
    assert preflight(client, origin_server.url, "POST", origin).headers["access-control-allow-origin"] == origin
    response = client.post(origin_server.url, headers={**TUS, "Origin": origin, "Upload-Length": "1"})
    assert response.status_code == 201
    assert_exposes_tus_headers(response, origin)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://allowed.example.evil.org",  # the regex must match the whole origin, not a prefix
        "https://evil.org/https://allowed.example",  # ... nor a suffix
        "null",
    ],
)
def test_disallowed_origin_is_refused_and_nothing_is_created(
    origin_server: TusServer, client: httpx.Client, origin: str
) -> None:
    before = sorted(origin_server.upload_dir.glob("*.info"))
    refused_preflight = preflight(client, origin_server.url, "POST", origin)
    assert refused_preflight.status_code == 403
    response = client.post(origin_server.url, headers={**TUS, "Origin": origin, "Upload-Length": "1"})
    assert response.status_code == 403
    assert response.text.startswith("ERR_ORIGIN_NOT_ALLOWED")
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "location" not in response.headers
    assert response.headers.get("access-control-allow-origin") is None
    assert sorted(origin_server.upload_dir.glob("*.info")) == before  # nothing created


def test_disallowed_origin_cannot_touch_an_existing_upload(origin_server: TusServer, client: httpx.Client) -> None:
    url = create(client, origin_server, 5)
    evil = {"Origin": "https://allowed.example.evil.org"}
    assert patch(client, url, 0, b"hello", **evil).status_code == 403
    assert client.delete(url, headers={**TUS, **evil}).status_code == 403
    assert head(client, url).headers["upload-offset"] == "0"


# --- other flags ------------------------------------------------------------------------------------


def test_disable_cors_sends_no_cors_headers(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    srv = make_server("-disable-cors")
    preflight_response = preflight(client, srv.url, "POST")
    assert preflight_response.status_code == 200  # the plain tus OPTIONS answer
    created = client.post(srv.url, headers={**TUS, "Origin": ORIGIN, "Upload-Length": "1"})
    assert created.status_code == 201
    for response in (preflight_response, created):
        assert cors_headers(response) == {}


def test_credentials_and_appended_lists(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    srv = make_server(
        "-cors-allow-credentials",
        "-cors-allow-headers",
        "X-Custom",
        "-cors-expose-headers",
        "X-Other",
        "-cors-allow-methods",
        "PUT",
        "-cors-max-age",
        "600",
    )
    answered = preflight(client, srv.url, "POST")
    assert answered.headers["access-control-allow-credentials"] == "true"
    assert answered.headers["access-control-allow-origin"] == ORIGIN  # never "*" with credentials
    assert covers(answered.headers["access-control-allow-headers"], (*TUS_REQUEST_HEADERS, "X-Custom"))
    assert covers(answered.headers["access-control-allow-methods"], (*DEFAULT_METHODS, "PUT"))
    assert answered.headers["access-control-max-age"] == "600"

    created = client.post(srv.url, headers={**TUS, "Origin": ORIGIN, "Upload-Length": "1"})
    assert created.status_code == 201
    assert created.headers["access-control-allow-credentials"] == "true"
    assert covers(created.headers["access-control-expose-headers"], ("X-Other",))
    assert_exposes_tus_headers(created)  # the defaults stay
