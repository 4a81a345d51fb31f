"""Checksum extension over HTTP: `Upload-Checksum: <algorithm> <base64 digest>`.

A verified request is stored; a mismatched, malformed, unsupported, oversized or
interrupted one stores nothing (T-CHK-5, and its interrupted-request corollary).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch

ALGORITHMS = ["md5", "sha1", "sha256", "sha512"]
DEADLINE = 10.0


def checksum(algorithm: str, data: bytes) -> str:
    """The Upload-Checksum header value for `data`."""
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def data_file(server: TusServer, url: str):  # -> Path
    return server.upload_dir / url.rsplit("/", 1)[1]


def assert_unchanged(client: httpx.Client, server: TusServer, url: str, stored: bytes) -> None:
    """HEAD offset and the data file both still show exactly `stored`."""
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == str(len(stored))
    assert data_file(server, url).read_bytes() == stored
    assert not data_file(server, url).with_suffix(".rollback").exists()


def started_upload(client: httpx.Client, server: TusServer, length: int, prefix: bytes = b"abc") -> str:
    """An upload of `length` bytes that already holds `prefix`, so 'unchanged' means something."""
    url = create(client, server, length)
    assert patch(client, url, 0, prefix).status_code == 204
    return url


def error_code(response: httpx.Response) -> str:
    return response.text.split(":", 1)[0]


# --- PATCH ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_matching_checksum_stores_the_chunk(server: TusServer, client: httpx.Client, algorithm: str) -> None:
    # T-CHK-3, T-CHK-4 case 3: verified -> 204 and the bytes count.
    url = started_upload(client, server, 3 + 11)
    response = patch(client, url, 3, b"hello world", **{"Upload-Checksum": checksum(algorithm, b"hello world")})
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == "14"
    assert_unchanged(client, server, url, b"abchello world")


def test_spec_example_sha1_header(server: TusServer, client: httpx.Client) -> None:
    # T-CHK-6, T-CHK-9: the literal header from the spec's example.
    url = create(client, server, 11)
    response = patch(client, url, 0, b"hello world", **{"Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="})
    assert response.status_code == 204, response.text
    assert data_file(server, url).read_bytes() == b"hello world"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mismatched_checksum_discards_the_chunk(server: TusServer, client: httpx.Client, algorithm: str) -> None:
    # T-CHK-4 case 2 (460) and T-CHK-5: the chunk is discarded, offset and file untouched.
    url = started_upload(client, server, 3 + 11)
    response = patch(client, url, 3, b"hello world", **{"Upload-Checksum": checksum(algorithm, b"hello w0rld")})
    assert response.status_code == 460
    assert error_code(response) == "ERR_CHECKSUM_MISMATCH"
    assert "upload-offset" not in response.headers
    assert_unchanged(client, server, url, b"abc")
    # The same chunk, sent again with the right checksum, is accepted at the same offset.
    response = patch(client, url, 3, b"hello world", **{"Upload-Checksum": checksum(algorithm, b"hello world")})
    assert response.status_code == 204, response.text
    assert_unchanged(client, server, url, b"abchello world")


VALID_SHA1 = base64.b64encode(hashlib.sha1(b"hello").digest()).decode()


@pytest.mark.parametrize(
    ("header", "code"),
    [
        # T-CHK-4 case 1: an algorithm the server does not support.
        ("crc32 " + base64.b64encode(b"\x00\x00\x00\x00").decode(), "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ("sha3 " + VALID_SHA1, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        # T-CHK-7: algorithm names are lowercase; T-CHK-9: '<algorithm> <base64>'.
        ("SHA1 " + VALID_SHA1, "ERR_INVALID_CHECKSUM"),
        ("sha1" + VALID_SHA1, "ERR_INVALID_CHECKSUM"),
        ("sha1", "ERR_INVALID_CHECKSUM"),
        ("sha1 not*base64!", "ERR_INVALID_CHECKSUM"),
        ("sha1 " + VALID_SHA1 + " extra", "ERR_INVALID_CHECKSUM"),
    ],
    ids=["crc32", "sha3", "uppercase", "no-space", "no-digest", "bad-base64", "three-parts"],
)
def test_bad_checksum_header_is_400_and_stores_nothing(
    server: TusServer, client: httpx.Client, header: str, code: str
) -> None:
    # T-CHK-4 case 1 / T-CHK-5: rejected before a byte is stored.
    url = started_upload(client, server, 3 + 5)
    response = patch(client, url, 3, b"hello", **{"Upload-Checksum": header})
    assert response.status_code == 400
    assert error_code(response) == code
    assert_unchanged(client, server, url, b"abc")


def test_checksum_trailer_is_rejected(server: TusServer, client: httpx.Client) -> None:
    # T-CTR-1: checksum-trailer is not offered, so a declared trailer is a bad request.
    url = started_upload(client, server, 3 + 5)
    response = patch(client, url, 3, b"hello", Trailer="Upload-Checksum")
    assert response.status_code == 400
    assert_unchanged(client, server, url, b"abc")


def test_checksummed_chunked_body_longer_than_upload_keeps_nothing(server: TusServer, client: httpx.Client) -> None:
    # A-3 with T-CHK-3: the request is not received whole, so none of it is stored.
    url = started_upload(client, server, 3 + 10)
    body = b"0123456789" * 3

    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        for i in range(0, len(body), 4):
            yield body[i : i + 4]

    headers = {
        **TUS,
        "Upload-Offset": "3",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": checksum("sha256", body),
    }
    response = client.patch(url, content=chunks(), headers=headers)
    assert response.status_code == 413
    assert_unchanged(client, server, url, b"abc")


def test_interrupted_checksummed_patch_keeps_nothing(server: TusServer, client: httpx.Client) -> None:
    # T-CHK-5 corollary (tus-resumable-upload-protocol#143): an interrupted checksummed
    # request was never received whole, so even the bytes that reached the disk go.
    body = os.urandom(6 << 20)
    url = started_upload(client, server, 3 + len(body))
    path = data_file(server, url)
    request = (
        f"PATCH {urlsplit(url).path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        "Tus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        "Upload-Offset: 3\r\n"
        f"Upload-Checksum: {checksum('sha256', body)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(request + body[: len(body) // 2])
        # Give the server the chance to write some of it (bounded; the outcome must not depend on it).
        deadline = time.monotonic() + 5.0
        while path.stat().st_size <= 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    # The server may notice the disconnect a moment later: poll until HEAD is stable.
    deadline = time.monotonic() + DEADLINE
    offsets: list[str] = []
    while time.monotonic() < deadline:
        offsets.append(head(client, url).headers["upload-offset"])
        if offsets[-2:] == ["3", "3"] and path.stat().st_size == 3:
            break
        time.sleep(0.02)
    assert offsets[-1] == "3", offsets
    assert_unchanged(client, server, url, b"abc")


# --- creation-with-upload --------------------------------------------------------------


def post_with_body(client: httpx.Client, server: TusServer, data: bytes, checksum_header: str) -> httpx.Response:
    headers = {
        **TUS,
        "Upload-Length": str(len(data)),
        "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": checksum_header,
    }
    return client.post(server.url, content=data, headers=headers)


def test_creation_with_upload_verifies_checksum(server: TusServer, client: httpx.Client) -> None:
    # T-CWU-3 with T-CHK-3: the POST body is checked like a PATCH body.
    response = post_with_body(client, server, b"hello world", checksum("sha1", b"hello world"))
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == "11"
    assert data_file(server, response.headers["location"]).read_bytes() == b"hello world"


def test_creation_with_upload_checksum_mismatch_leaves_no_upload(server: TusServer, client: httpx.Client) -> None:
    # T-CHK-5: 460, and (wire policy) the half-made upload is deleted: the client has no URL for it.
    before = set(os.listdir(server.upload_dir))
    response = post_with_body(client, server, b"hello world", checksum("sha1", b"HELLO WORLD"))
    assert response.status_code == 460
    assert error_code(response) == "ERR_CHECKSUM_MISMATCH"
    assert "location" not in response.headers
    assert set(os.listdir(server.upload_dir)) - before == set()


def test_creation_with_upload_bad_checksum_header_creates_nothing(server: TusServer, client: httpx.Client) -> None:
    before = set(os.listdir(server.upload_dir))
    response = post_with_body(client, server, b"hello", "crc32 AAAAAA==")
    assert response.status_code == 400
    assert error_code(response) == "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"
    assert set(os.listdir(server.upload_dir)) - before == set()
