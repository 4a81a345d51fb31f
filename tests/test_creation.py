"""Creation, metadata, -max-size, creation-with-upload, creation-defer-length and the .info file.

Checklist ids refer to /work/shared/research/spec-checklist.md.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server
from tusclient import client as tus_client

OCTET = "application/offset+octet-stream"
MAX_SIZE = 10
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT"
)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    """A server with -max-size 10, shared by this module."""
    srv = start_server(tmp_path_factory.mktemp("maxsize") / "uploads", "-max-size", str(MAX_SIZE))
    yield srv
    srv.stop()


# --- helpers -------------------------------------------------------------------------------


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def entries(server: TusServer) -> list[Path]:
    return sorted(server.upload_dir.iterdir())


def post(client: httpx.Client, server: TusServer, content: bytes = b"", **headers: str) -> httpx.Response:
    return client.post(server.url, content=content, headers={**TUS, **headers})


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(f"{code}: ") and response.text.endswith("\n"), response.text
    assert "location" not in response.headers


def decode_metadata(header: str) -> dict[str, bytes]:
    """Upload-Metadata -> {key: raw value}; valueless keys map to b''."""
    result: dict[str, bytes] = {}
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        assert key not in result
        result[key] = base64.b64decode(value, validate=True) if value else b""
    return result


def encode_metadata(metadata: dict[str, bytes]) -> str:
    return ",".join(f"{k} {base64.b64encode(v).decode()}" if v else k for k, v in metadata.items())


def raw_post(server: TusServer, header_lines: list[bytes]) -> int:
    """POST to the creation URL over a raw socket (for bytes httpx refuses to send); returns the status."""
    request = b"\r\n".join(
        [
            b"POST /files/ HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Tus-Resumable: 1.0.0",
            b"Connection: close",
            b"Content-Length: 0",
            *header_lines,
            b"",
            b"",
        ]
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return int(b"".join(chunks).split(b" ", 2)[1])


# --- creation (T-CRE-*) --------------------------------------------------------------------


def test_creation_returns_201_with_absolute_location(server: TusServer, client: httpx.Client) -> None:
    response = post(client, server, **{"Upload-Length": "10"})
    assert response.status_code == 201  # T-CRE-7
    assert response.headers["tus-resumable"] == "1.0.0"
    # T-CRE-8 + wire policy: absolute http://<Host>/files/<32 lowercase hex>
    assert re.fullmatch(re.escape(server.url) + r"[0-9a-f]{32}", response.headers["location"])
    assert "upload-offset" not in response.headers
    info = head(client, response.headers["location"])
    assert info.headers["upload-offset"] == "0"  # T-CRE-9
    assert info.headers["upload-length"] == "10"


def test_creation_ids_are_unique(server: TusServer, client: httpx.Client) -> None:
    urls = {create(client, server, 1) for _ in range(20)}
    assert len(urls) == 20


def test_creation_location_uses_host_header(server: TusServer, client: httpx.Client) -> None:
    response = post(client, server, **{"Upload-Length": "1", "Host": "tus.example:8443"})
    assert response.status_code == 201
    assert re.fullmatch(r"http://tus\.example:8443/files/[0-9a-f]{32}", response.headers["location"])


def test_creation_without_trailing_slash(server: TusServer, client: httpx.Client) -> None:
    response = client.post(server.url.rstrip("/"), headers={**TUS, "Upload-Length": "1"})
    assert response.status_code == 201
    assert re.fullmatch(re.escape(server.url) + r"[0-9a-f]{32}", response.headers["location"])


def test_creation_announces_expiry_about_a_week_ahead(server: TusServer, client: httpx.Client) -> None:
    # T-EXP-4, T-EXP-7: IMF-fixdate, default -expiration 168h.
    response = post(client, server, **{"Upload-Length": "10"})
    expires = response.headers["upload-expires"]
    assert IMF_FIXDATE.fullmatch(expires), expires
    delta = parsedate_to_datetime(expires).timestamp() - time.time()
    assert abs(delta - 7 * 24 * 3600) < 120


def test_empty_upload_is_complete_at_once(server: TusServer, client: httpx.Client) -> None:
    # T-CRE-3
    response = post(client, server, **{"Upload-Length": "0"})
    assert response.status_code == 201
    assert "upload-expires" not in response.headers  # already complete
    url = response.headers["location"]
    info = head(client, url)
    assert info.headers["upload-offset"] == "0"
    assert info.headers["upload-length"] == "0"
    assert "upload-expires" not in info.headers
    assert (server.upload_dir / upload_id(url)).read_bytes() == b""
    assert patch(client, url, 0, b"").status_code == 204
    assert_error(patch(client, url, 0, b"x"), 413, "ERR_UPLOAD_SIZE_EXCEEDED")


# --- Upload-Metadata (T-CRE-4, T-CRE-5, T-META-*) ---------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {"filename": b"hello world.txt", "filetype": b"text/plain"},
        {"name": "résumé ✓.txt".encode()},
        {"is_confidential": b""},  # T-META-7: valueless key
        {"a": b"1", "empty": b"", "z": b"3"},
        {"smuggle": b"x\r\nSet-Cookie: a=b\x00\xff"},  # T-META-8: arbitrary bytes stay base64 on the wire
        {"k!#$%&'*+-.^_`|~": b"v"},
    ],
    ids=["two-keys", "utf8", "valueless", "mixed", "binary", "punctuation-key"],
)
def test_metadata_is_echoed_on_head(server: TusServer, client: httpx.Client, metadata: dict[str, bytes]) -> None:
    url = create(client, server, 5, **{"Upload-Metadata": encode_metadata(metadata)})
    response = head(client, url)
    assert decode_metadata(response.headers["upload-metadata"]) == metadata  # compare decoded maps


def test_valueless_key_with_trailing_space_in_pair(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 5, **{"Upload-Metadata": "empty ,name bmFtZQ=="})
    assert decode_metadata(head(client, url).headers["upload-metadata"]) == {"empty": b"", "name": b"name"}


def test_empty_metadata_header_means_no_metadata(server: TusServer, client: httpx.Client) -> None:
    # tuspy sends `Upload-Metadata: ` when it has no metadata.
    response = post(client, server, **{"Upload-Length": "5", "Upload-Metadata": ""})
    assert response.status_code == 201
    assert "upload-metadata" not in head(client, response.headers["location"]).headers


def test_tuspy_upload_without_metadata(server: TusServer) -> None:
    uploader = tus_client.TusClient(server.url).uploader(file_stream=io.BytesIO(b"tuspy data"), chunk_size=4)
    uploader.upload()
    url = uploader.url
    assert url is not None
    assert (server.upload_dir / upload_id(url)).read_bytes() == b"tuspy data"
    with httpx.Client(timeout=10) as c:
        response = head(c, url)
    assert response.headers["upload-offset"] == "10"
    assert "upload-metadata" not in response.headers


@pytest.mark.parametrize(
    "header",
    [
        "name !!!!",  # T-META-5: not base64
        "name aGVsbG8*",
        "name YQ=x",
        "a YQ==,a Yg==",  # T-META-6: duplicate key
        "a,a",
        ",a YQ==",  # T-META-3: empty key
        "a YQ==,,b Yg==",
        "a YQ==,",
        "a YQ== Yg==",  # T-META-2: three parts
        "a\tb YQ==",  # control character in key
    ],
    ids=[
        "bang",
        "star",
        "bad-padding",
        "duplicate",
        "duplicate-valueless",
        "leading-comma",
        "empty-pair",
        "trailing-comma",
        "three-parts",
        "tab-in-key",
    ],
)
def test_bad_metadata_is_400_and_creates_nothing(server: TusServer, client: httpx.Client, header: str) -> None:
    # strict
    before = entries(server)
    response = post(client, server, **{"Upload-Length": "5", "Upload-Metadata": header})
    assert_error(response, 400, "ERR_INVALID_METADATA")
    assert entries(server) == before


@pytest.mark.parametrize("key", [b"a\x01b", b"a\x7fb", b"\x1b[31m"])
def test_metadata_key_with_control_bytes_is_400_and_creates_nothing(server: TusServer, key: bytes) -> None:
    # Sent raw: httpx refuses these bytes. The HTTP parser may reject the header itself (also 400).
    before = entries(server)
    assert raw_post(server, [b"Upload-Length: 5", b"Upload-Metadata: " + key + b" YQ=="]) == 400
    assert entries(server) == before


# --- length headers (T-CRE-2, T-DEF-1, T-DEF-2, A-17) ---------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": ""}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "abc"}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "-1"}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "1.5"}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "+5"}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "0x10"}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "1e3"}, "ERR_INVALID_UPLOAD_LENGTH"),
        ({"Upload-Length": "9223372036854775808"}, "ERR_INVALID_UPLOAD_LENGTH"),  # > int64
        ({"Upload-Length": "5", "Upload-Defer-Length": "1"}, "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
        ({"Upload-Length": "abc", "Upload-Defer-Length": "1"}, "ERR_AMBIGUOUS_UPLOAD_LENGTH"),
        ({"Upload-Defer-Length": "0"}, "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        ({"Upload-Defer-Length": "2"}, "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        ({"Upload-Defer-Length": "true"}, "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
        ({"Upload-Defer-Length": ""}, "ERR_INVALID_UPLOAD_LENGTH_DEFER"),
    ],
)
def test_bad_length_headers_are_400_and_create_nothing(
    server: TusServer, client: httpx.Client, headers: dict[str, str], code: str
) -> None:
    before = entries(server)
    assert_error(post(client, server, **headers), 400, code)
    assert entries(server) == before


# --- -max-size (T-CRE-6) ------------------------------------------------------------------------


def test_max_size_allows_exact_limit(small_server: TusServer, client: httpx.Client) -> None:
    assert post(client, small_server, **{"Upload-Length": str(MAX_SIZE)}).status_code == 201


def test_max_size_exceeded_at_creation_is_413(small_server: TusServer, client: httpx.Client) -> None:
    before = entries(small_server)
    response = post(client, small_server, **{"Upload-Length": str(MAX_SIZE + 1)})
    assert_error(response, 413, "ERR_MAX_SIZE_EXCEEDED")
    assert entries(small_server) == before


def test_max_size_exceeded_by_declared_deferred_length_is_413(small_server: TusServer, client: httpx.Client) -> None:
    url = create(client, small_server, None)
    response = patch(client, url, 0, b"", **{"Upload-Length": str(MAX_SIZE + 1)})
    assert_error(response, 413, "ERR_MAX_SIZE_EXCEEDED")
    info = head(client, url)
    assert info.headers["upload-defer-length"] == "1"
    assert "upload-length" not in info.headers


def test_max_size_bounds_deferred_upload_body(small_server: TusServer, client: httpx.Client) -> None:
    url = create(client, small_server, None)
    assert patch(client, url, 0, b"12345").headers["upload-offset"] == "5"
    response = patch(client, url, 5, b"678901")  # 11 bytes in all
    assert_error(response, 413, "ERR_MAX_SIZE_EXCEEDED")
    assert head(client, url).headers["upload-offset"] == "5"
    assert (small_server.upload_dir / upload_id(url)).read_bytes() == b"12345"


def test_max_size_exceeded_with_creation_body_is_413(small_server: TusServer, client: httpx.Client) -> None:
    before = entries(small_server)
    response = post(
        client, small_server, b"x" * (MAX_SIZE + 1), **{"Upload-Length": str(MAX_SIZE + 1), "Content-Type": OCTET}
    )
    assert_error(response, 413, "ERR_MAX_SIZE_EXCEEDED")
    assert entries(small_server) == before


# --- creation-with-upload (T-CWU-*) ---------------------------------------------------------------


def test_creation_with_upload_stores_body(server: TusServer, client: httpx.Client) -> None:
    response = post(client, server, b"hello", **{"Upload-Length": "100", "Content-Type": OCTET})
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "5"  # T-CWU-3
    assert "upload-expires" in response.headers
    url = response.headers["location"]
    assert head(client, url).headers["upload-offset"] == "5"
    assert (server.upload_dir / upload_id(url)).read_bytes() == b"hello"
    assert patch(client, url, 5, b" world").headers["upload-offset"] == "11"


def test_creation_with_empty_body_reports_offset_zero(server: TusServer, client: httpx.Client) -> None:
    response = post(client, server, b"", **{"Upload-Length": "5", "Content-Type": OCTET})
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "0"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_creation_body_with_other_content_type_is_ignored(
    server: TusServer, client: httpx.Client, content_type: str | None
) -> None:
    # not upload data.
    headers = {"Upload-Length": "10"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = post(client, server, b"hello", **headers)
    assert response.status_code == 201
    assert "upload-offset" not in response.headers
    url = response.headers["location"]
    assert head(client, url).headers["upload-offset"] == "0"
    assert (server.upload_dir / upload_id(url)).read_bytes() == b""


def test_creation_with_whole_body_completes_upload(server: TusServer, client: httpx.Client) -> None:
    response = post(client, server, b"0123456789", **{"Upload-Length": "10", "Content-Type": OCTET})
    assert response.status_code == 201  # still 201
    assert response.headers["upload-offset"] == "10"
    assert "upload-expires" not in response.headers
    info = head(client, response.headers["location"])
    assert info.headers["upload-offset"] == info.headers["upload-length"] == "10"


def test_creation_body_longer_than_length_is_413_and_creates_nothing(server: TusServer, client: httpx.Client) -> None:
    before = entries(server)
    response = post(client, server, b"0123456789X", **{"Upload-Length": "10", "Content-Type": OCTET})
    assert_error(response, 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    assert entries(server) == before


def test_creation_with_upload_and_deferred_length(server: TusServer, client: httpx.Client) -> None:
    response = post(client, server, b"abc", **{"Upload-Defer-Length": "1", "Content-Type": OCTET})
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "3"
    info = head(client, response.headers["location"])
    assert info.headers["upload-offset"] == "3"
    assert info.headers["upload-defer-length"] == "1"


# --- creation-defer-length (T-DEF-*) ----------------------------------------------------------------


def test_deferred_upload_head_has_defer_length_and_no_length(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None)
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-defer-length"] == "1"  # T-DEF-4
    assert "upload-length" not in response.headers
    assert response.headers["upload-offset"] == "0"
    # Still deferred after data without a length.
    assert patch(client, url, 0, b"abc").headers["upload-offset"] == "3"
    response = head(client, url)
    assert response.headers["upload-defer-length"] == "1"
    assert "upload-length" not in response.headers
    assert response.headers["upload-offset"] == "3"


def test_patch_declares_deferred_length(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None)
    assert patch(client, url, 0, b"abc").status_code == 204
    response = patch(client, url, 3, b"de", **{"Upload-Length": "6"})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "5"
    info = head(client, url)
    assert info.headers["upload-length"] == "6"
    assert "upload-defer-length" not in info.headers
    # Now the length bounds the upload.
    assert_error(patch(client, url, 5, b"fg"), 413, "ERR_UPLOAD_SIZE_EXCEEDED")
    assert patch(client, url, 5, b"f").headers["upload-offset"] == "6"
    assert (server.upload_dir / upload_id(url)).read_bytes() == b"abcdef"


def test_declared_length_smaller_than_offset_is_400(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None)
    assert patch(client, url, 0, b"12345").status_code == 204
    assert_error(patch(client, url, 5, b"", **{"Upload-Length": "3"}), 400, "ERR_INVALID_UPLOAD_LENGTH")
    info = head(client, url)
    assert info.headers["upload-defer-length"] == "1"
    assert info.headers["upload-offset"] == "5"


@pytest.mark.parametrize("value", ["abc", "-1", ""])
def test_declared_length_must_be_a_number(server: TusServer, client: httpx.Client, value: str) -> None:
    url = create(client, server, None)
    assert_error(patch(client, url, 0, b"", **{"Upload-Length": value}), 400, "ERR_INVALID_UPLOAD_LENGTH")
    assert head(client, url).headers["upload-defer-length"] == "1"


@pytest.mark.parametrize("deferred", [False, True], ids=["set-at-creation", "declared-by-patch"])
def test_changing_a_set_length_is_400(server: TusServer, client: httpx.Client, deferred: bool) -> None:
    # T-DEF-3, A-18
    url = create(client, server, None if deferred else 10)
    if deferred:
        assert patch(client, url, 0, b"", **{"Upload-Length": "10"}).status_code == 204
    assert_error(patch(client, url, 0, b"abc", **{"Upload-Length": "11"}), 400, "ERR_INVALID_UPLOAD_LENGTH")
    assert head(client, url).headers["upload-length"] == "10"
    assert (server.upload_dir / upload_id(url)).read_bytes() == b""
    # Repeating the same length is fine.
    response = patch(client, url, 0, b"abc", **{"Upload-Length": "10"})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "3"


def test_declaring_length_equal_to_offset_completes(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None)
    assert patch(client, url, 0, b"abc").status_code == 204
    response = patch(client, url, 3, b"", **{"Upload-Length": "3"})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "3"
    assert "upload-expires" not in response.headers
    info = head(client, url)
    assert info.headers["upload-length"] == info.headers["upload-offset"] == "3"
    assert "upload-defer-length" not in info.headers
    assert "upload-expires" not in info.headers


def test_deferred_length_zero_completes_empty_upload(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None)
    assert patch(client, url, 0, b"", **{"Upload-Length": "0"}).status_code == 204
    info = head(client, url)
    assert info.headers["upload-length"] == info.headers["upload-offset"] == "0"


# --- the .info file (tusd FileInfo) ---------------------------------------------------------------


def read_info(server: TusServer, url: str) -> dict[str, object]:
    return json.loads((server.upload_dir / (upload_id(url) + ".info")).read_text())


def test_info_file_has_tusd_fields(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 10, **{"Upload-Metadata": "filename aGVsbG8udHh0,flag"})
    uid = upload_id(url)
    info = read_info(server, url)
    assert info["ID"] == uid
    assert info["Size"] == 10
    assert info["SizeIsDeferred"] is False
    assert info["Offset"] == 0
    assert info["MetaData"] == {"filename": "hello.txt", "flag": ""}
    assert info["IsPartial"] is False
    assert info["IsFinal"] is False
    assert info["PartialUploads"] is None
    storage = info["Storage"]
    assert isinstance(storage, dict)
    assert storage["Type"] == "filestore"
    assert Path(storage["Path"]) == (server.upload_dir / uid).absolute()
    assert Path(storage["InfoPath"]) == (server.upload_dir / (uid + ".info")).absolute()
    assert (server.upload_dir / uid).read_bytes() == b""


def test_info_file_of_deferred_upload(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None)
    info = read_info(server, url)
    assert info["SizeIsDeferred"] is True
    assert info["Size"] == 0
    assert info["MetaData"] == {}
    assert patch(client, url, 0, b"ab", **{"Upload-Length": "7"}).status_code == 204
    info = read_info(server, url)
    assert info["SizeIsDeferred"] is False
    assert info["Size"] == 7


def test_info_file_records_partial_upload(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 3, **{"Upload-Concat": "partial"})
    info = read_info(server, url)
    assert info["IsPartial"] is True
    assert info["IsFinal"] is False
