"""tus core over HTTP: OPTIONS, Tus-Resumable, HEAD, PATCH, 405s, error bodies, method override.

Checklist ids refer to /work/shared/research/spec-checklist.md.
"""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Callable

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch

OCTET = "application/offset+octet-stream"
ALL_EXTENSIONS = [
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
    "concatenation",
]
ERROR_BODY = re.compile(r"ERR_[A-Z0-9_]+: \S[^\n]*\n")


# --- helpers -------------------------------------------------------------------------------


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def unknown_url(server: TusServer) -> str:
    return server.url + secrets.token_hex(16)


def data_of(server: TusServer, url: str) -> bytes:
    return (server.upload_dir / upload_id(url)).read_bytes()


def started_upload(client: httpx.Client, server: TusServer, data: bytes = b"abc", length: int = 10) -> str:
    """An upload of `length` bytes whose first bytes are `data`."""
    url = create(client, server, length)
    if data:
        assert patch(client, url, 0, data).status_code == 204
    return url


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    """A tus error: status, Tus-Resumable, text/plain `ERR_CODE: message` body."""
    assert response.status_code == status, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["content-type"].startswith("text/plain")
    assert ERROR_BODY.fullmatch(response.text), response.text
    if code is not None:
        assert response.text.startswith(f"{code}: "), response.text


def raw_request(server: TusServer, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP/1.1 request (which must say Connection: close); return status, headers, body bytes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head_part, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


# --- OPTIONS (T-CORE-3, T-CORE-6, T-CORE-7, T-CORE-24, T-CORE-25) ----------------------------


@pytest.mark.parametrize("target", ["creation", "upload", "unknown-upload"])
def test_options_describes_server(server: TusServer, client: httpx.Client, target: str) -> None:
    url = {
        "creation": server.url,
        "upload": create(client, server, 5),
        "unknown-upload": unknown_url(server),
    }[target]
    response = client.options(url)
    assert response.status_code in (200, 204)  # T-CORE-24
    assert response.headers["tus-version"] == "1.0.0"  # T-CORE-3
    assert response.headers["tus-extension"].split(",") == ALL_EXTENSIONS  # T-CORE-6
    assert response.headers["tus-checksum-algorithm"].split(",") == ["md5", "sha1", "sha256", "sha512"]
    assert "tus-max-size" not in response.headers  # T-CORE-7: no limit, no header
    assert response.headers["tus-resumable"] == "1.0.0"


@pytest.mark.parametrize("version", ["9.9.9", "0.2.2", "garbage"])
def test_options_ignores_tus_resumable(server: TusServer, client: httpx.Client, version: str) -> None:
    # T-CORE-25: the server MUST ignore Tus-Resumable on OPTIONS.
    response = client.options(server.url, headers={"Tus-Resumable": version})
    assert response.status_code in (200, 204)
    assert response.headers["tus-version"] == "1.0.0"


@pytest.mark.parametrize(
    ("flags", "removed"),
    [
        (("-disable-termination",), "termination"),
        (("-disable-concatenation",), "concatenation"),
        (("-expiration", "0"), "expiration"),
    ],
)
def test_options_drops_disabled_extensions(
    make_server: Callable[..., TusServer], client: httpx.Client, flags: tuple[str, ...], removed: str
) -> None:
    srv = make_server(*flags)
    response = client.options(srv.url)
    assert response.status_code in (200, 204)
    assert response.headers["tus-extension"].split(",") == [e for e in ALL_EXTENSIONS if e != removed]


def test_options_announces_max_size(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    # T-CORE-7: Tus-Max-Size when there is a hard limit.
    srv = make_server("-max-size", "1234")
    assert client.options(srv.url).headers["tus-max-size"] == "1234"


def test_disabled_termination_rejects_delete(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    srv = make_server("-disable-termination")
    url = create(client, srv, 5)
    response = client.delete(url, headers=TUS)
    assert_error(response, 405)
    assert "DELETE" not in {m.strip() for m in response.headers["allow"].split(",")}
    assert head(client, url).status_code == 200
    assert (srv.upload_dir / upload_id(url)).exists()


# --- Tus-Resumable (T-CORE-4, T-CORE-5) ------------------------------------------------------

BAD_VERSIONS = [None, "0.2.2", "1.0", "2.0.0"]


def _version_headers(version: str | None) -> dict[str, str]:
    return {} if version is None else {"Tus-Resumable": version}


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_post_without_supported_version_is_412_and_creates_nothing(
    server: TusServer, client: httpx.Client, version: str | None
) -> None:
    before = sorted(server.upload_dir.iterdir())
    response = client.post(server.url, headers={**_version_headers(version), "Upload-Length": "5"})
    assert_error(response, 412, "ERR_UNSUPPORTED_VERSION")
    assert response.headers["tus-version"] == "1.0.0"
    assert "location" not in response.headers
    assert sorted(server.upload_dir.iterdir()) == before


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_head_without_supported_version_is_412(server: TusServer, client: httpx.Client, version: str | None) -> None:
    url = started_upload(client, server, b"abc")
    response = client.head(url, headers=_version_headers(version))
    assert response.status_code == 412
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "upload-offset" not in response.headers
    assert response.content == b""


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_patch_without_supported_version_is_412_and_writes_nothing(
    server: TusServer, client: httpx.Client, version: str | None
) -> None:
    url = started_upload(client, server, b"abc")
    response = client.patch(
        url, content=b"def", headers={**_version_headers(version), "Upload-Offset": "3", "Content-Type": OCTET}
    )
    assert_error(response, 412, "ERR_UNSUPPORTED_VERSION")
    assert response.headers["tus-version"] == "1.0.0"
    assert head(client, url).headers["upload-offset"] == "3"
    assert data_of(server, url) == b"abc"


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_delete_without_supported_version_is_412_and_keeps_upload(
    server: TusServer, client: httpx.Client, version: str | None
) -> None:
    url = started_upload(client, server, b"abc")
    response = client.delete(url, headers=_version_headers(version))
    assert_error(response, 412, "ERR_UNSUPPORTED_VERSION")
    assert response.headers["tus-version"] == "1.0.0"
    assert head(client, url).status_code == 200
    assert data_of(server, url) == b"abc"


# --- HEAD (T-CORE-9..13) -------------------------------------------------------------------------


def test_head_of_new_upload(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 10)
    response = head(client, url)
    assert response.status_code in (200, 204)  # T-CORE-12
    assert response.headers["upload-offset"] == "0"  # T-CORE-9: even when 0
    assert response.headers["upload-length"] == "10"  # T-CORE-10
    assert response.headers["cache-control"] == "no-store"  # T-CORE-13
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "upload-defer-length" not in response.headers
    assert "upload-metadata" not in response.headers
    assert "upload-concat" not in response.headers
    assert "upload-expires" in response.headers  # default -expiration 168h, unfinished


def test_head_of_partly_written_upload(server: TusServer, client: httpx.Client) -> None:
    url = started_upload(client, server, b"hello", 10)
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "5"
    assert response.headers["upload-length"] == "10"


def test_head_of_complete_upload(server: TusServer, client: httpx.Client) -> None:
    url = started_upload(client, server, b"0123456789", 10)
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "10"  # T-CORE-9: even when complete
    assert response.headers["upload-length"] == "10"
    assert response.headers["cache-control"] == "no-store"
    assert "upload-expires" not in response.headers  # completed uploads never expire


def test_head_of_unknown_upload_is_404_without_offset(server: TusServer, client: httpx.Client) -> None:
    # T-CORE-11
    response = head(client, unknown_url(server))
    assert response.status_code == 404
    assert "upload-offset" not in response.headers
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.content == b""


def test_head_error_sends_no_body_bytes(server: TusServer) -> None:
    # Raw socket: httpx would not read a HEAD body, so check that none is on the wire.
    path = f"/files/{secrets.token_hex(16)}"
    status, headers, body = raw_request(
        server,
        f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n".encode(),
    )
    assert status == 404
    assert "upload-offset" not in headers
    assert body == b""


# --- PATCH (T-CORE-14..21) -----------------------------------------------------------------------


def test_patch_appends_and_reports_new_offset(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 11)
    first = patch(client, url, 0, b"hello")
    assert first.status_code == 204  # T-CORE-18
    assert first.headers["upload-offset"] == "5"  # T-CORE-19, T-CORE-20
    assert first.headers["tus-resumable"] == "1.0.0"
    assert first.content == b""
    second = patch(client, url, 5, b" world")
    assert second.status_code == 204
    assert second.headers["upload-offset"] == "11"
    assert head(client, url).headers["upload-offset"] == "11"
    assert data_of(server, url) == b"hello world"


def test_patch_with_empty_body_keeps_offset(server: TusServer, client: httpx.Client) -> None:
    url = started_upload(client, server, b"abc")
    response = patch(client, url, 3, b"")
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "3"


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/octet-stream", "application/offset+octet-streamx", "multipart/form-data"],
)
def test_patch_with_wrong_content_type_is_415(
    server: TusServer, client: httpx.Client, content_type: str | None
) -> None:
    # T-CORE-15
    url = started_upload(client, server, b"abc")
    headers = {**TUS, "Upload-Offset": "3"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.patch(url, content=b"def", headers=headers)
    assert_error(response, 415, "ERR_INVALID_CONTENT_TYPE")
    assert head(client, url).headers["upload-offset"] == "3"
    assert data_of(server, url) == b"abc"


def test_patch_content_type_parameters_are_allowed(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 3)
    response = patch(client, url, 0, b"abc", **{"Content-Type": "Application/Offset+Octet-Stream; charset=x"})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "3"


@pytest.mark.parametrize("offset", [None, "", "abc", "-1", "1.0", "0x3", "+3", "99999999999999999999"])
def test_patch_with_missing_or_bad_offset_is_400(server: TusServer, client: httpx.Client, offset: str | None) -> None:
    # T-CORE-1
    url = started_upload(client, server, b"abc")
    headers = {**TUS, "Content-Type": OCTET}
    if offset is not None:
        headers["Upload-Offset"] = offset
    response = client.patch(url, content=b"def", headers=headers)
    assert_error(response, 400, "ERR_INVALID_OFFSET")
    assert head(client, url).headers["upload-offset"] == "3"
    assert data_of(server, url) == b"abc"


@pytest.mark.parametrize("offset", [0, 2, 4, 10])
def test_patch_with_mismatched_offset_is_409_and_changes_nothing(
    server: TusServer, client: httpx.Client, offset: int
) -> None:
    # T-CORE-16
    url = started_upload(client, server, b"abc")
    response = patch(client, url, offset, b"XYZ")
    assert_error(response, 409, "ERR_MISMATCHED_OFFSET")
    assert response.headers["upload-offset"] == "3"  # wire policy: current offset on 409
    assert head(client, url).headers["upload-offset"] == "3"
    assert data_of(server, url) == b"abc"


def test_patch_unknown_upload_is_404(server: TusServer, client: httpx.Client) -> None:
    # T-CORE-21
    response = patch(client, unknown_url(server), 0, b"abc")
    assert_error(response, 404, "ERR_UPLOAD_NOT_FOUND")
    assert "upload-offset" not in response.headers


def test_patch_complete_upload_with_empty_body_is_204(server: TusServer, client: httpx.Client) -> None:
    # A-1
    url = started_upload(client, server, b"0123456789", 10)
    response = patch(client, url, 10, b"")
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "10"
    assert "upload-expires" not in response.headers


def test_patch_complete_upload_with_bytes_is_413_and_writes_nothing(server: TusServer, client: httpx.Client) -> None:
    # A-1, A-3
    url = started_upload(client, server, b"0123456789", 10)
    response = patch(client, url, 10, b"more")
    assert_error(response, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    assert head(client, url).headers["upload-offset"] == "10"
    assert data_of(server, url) == b"0123456789"


@pytest.mark.parametrize(("written", "sent"), [(b"", b"123456"), (b"ab", b"cdef"), (b"ab", b"c" * 100)])
def test_patch_longer_than_remaining_is_413_and_writes_nothing(
    server: TusServer, client: httpx.Client, written: bytes, sent: bytes
) -> None:
    # A-3: Content-Length tells up front, so nothing is written.
    url = started_upload(client, server, written, 5)
    response = patch(client, url, len(written), sent)
    assert_error(response, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    assert head(client, url).headers["upload-offset"] == str(len(written))
    assert data_of(server, url) == written


# --- 405 + Allow ---------------------------------------------------------------------------------


def _allowed(response: httpx.Response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize("method", ["PUT", "POST", "TRACE", "PROPFIND"])
def test_unsupported_method_on_upload_url_is_405(server: TusServer, client: httpx.Client, method: str) -> None:
    url = started_upload(client, server, b"abc")
    response = client.request(method, url, headers=TUS, content=b"xyz")
    assert_error(response, 405)
    assert _allowed(response) == {"OPTIONS", "HEAD", "PATCH", "GET", "DELETE"}
    assert method not in _allowed(response)
    assert data_of(server, url) == b"abc"


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unsupported_method_on_creation_url_is_405(server: TusServer, client: httpx.Client, method: str) -> None:
    before = sorted(server.upload_dir.iterdir())
    response = client.request(method, server.url, headers={**TUS, "Upload-Length": "5"})
    assert_error(response, 405)
    assert _allowed(response) == {"OPTIONS", "POST"}
    assert sorted(server.upload_dir.iterdir()) == before


# --- Every response: Tus-Resumable; every error: text/plain ERR_... (T-CORE-4) ---------------------


def test_every_response_carries_tus_resumable(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 3)
    responses = [
        client.options(server.url),
        client.options(url),
        client.post(server.url, headers={**TUS, "Upload-Length": "3"}),  # 201
        head(client, url),  # 200
        patch(client, url, 0, b"abc"),  # 204
        client.post(server.url, headers={"Upload-Length": "3"}),  # 412
        client.post(server.url, headers=TUS),  # 400
        head(client, unknown_url(server)),  # 404
        patch(client, url, 1, b"x"),  # 409
        patch(client, url, 3, b"x"),  # 413
        client.patch(url, headers={**TUS, "Upload-Offset": "3"}),  # 415
        client.get(server.url, headers=TUS),  # 405
        client.delete(url, headers=TUS),  # 204
    ]
    for response in responses:
        assert response.headers.get("tus-resumable") == "1.0.0", (response.request.method, response.status_code)


@pytest.mark.parametrize(
    ("status", "code", "make_request"),
    [
        (400, "ERR_INVALID_UPLOAD_LENGTH", lambda c, s, u: c.post(s.url, headers=TUS)),
        (404, "ERR_UPLOAD_NOT_FOUND", lambda c, s, u: c.delete(unknown_url(s), headers=TUS)),
        (405, None, lambda c, s, u: c.put(u, headers=TUS)),
        (409, "ERR_MISMATCHED_OFFSET", lambda c, s, u: patch(c, u, 1, b"x")),
        (412, "ERR_UNSUPPORTED_VERSION", lambda c, s, u: c.delete(u)),
        (413, "ERR_UPLOAD_SIZE_EXCEEDED", lambda c, s, u: patch(c, u, 0, b"x" * 11)),
        (415, "ERR_INVALID_CONTENT_TYPE", lambda c, s, u: c.patch(u, headers={**TUS, "Upload-Offset": "0"})),
    ],
)
def test_error_bodies_are_plain_text_codes(
    server: TusServer,
    client: httpx.Client,
    status: int,
    code: str | None,
    make_request: Callable[[httpx.Client, TusServer, str], httpx.Response],
) -> None:
    url = create(client, server, 10)
    assert_error(make_request(client, server, url), status, code)


# --- X-HTTP-Method-Override (T-CORE-8) --------------------------------------------------------------


def test_method_override_patch_appends(server: TusServer, client: httpx.Client) -> None:
    url = started_upload(client, server, b"abc", 6)
    response = client.post(
        url,
        content=b"def",
        headers={**TUS, "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "3", "Content-Type": OCTET},
    )
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "6"
    assert data_of(server, url) == b"abcdef"


def test_method_override_delete_terminates(server: TusServer, client: httpx.Client) -> None:
    url = started_upload(client, server, b"abc")
    response = client.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 204
    assert head(client, url).status_code == 404
    assert not (server.upload_dir / upload_id(url)).exists()
    assert not (server.upload_dir / (upload_id(url) + ".info")).exists()


def test_method_override_head_reports_offset(server: TusServer, client: httpx.Client) -> None:
    url = started_upload(client, server, b"abc", 10)
    response = client.post(url, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "3"
    assert response.headers["upload-length"] == "10"
    assert response.headers["cache-control"] == "no-store"
    assert response.content == b""


def test_method_override_replaces_real_method(server: TusServer, client: httpx.Client) -> None:
    # "The actual method MUST be ignored": a PATCH overridden to DELETE deletes.
    url = started_upload(client, server, b"abc")
    response = client.patch(
        url,
        content=b"def",
        headers={**TUS, "X-HTTP-Method-Override": "DELETE", "Upload-Offset": "3", "Content-Type": OCTET},
    )
    assert response.status_code == 204
    assert "upload-offset" not in response.headers
    assert head(client, url).status_code == 404
