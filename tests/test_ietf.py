"""The IETF "Resumable Uploads for HTTP" draft (spec_notes/ietf-draft.md), against real servers.

Requirement ids (I-*) are those of spec-checklist section 4. Interop versions 3 to 8 (drafts -01
to -11) are spoken; tests are parametrized over the versions wherever the wire differs:

- interop 3 names completeness `Upload-Incomplete` (?1 = not complete), later ones `Upload-Complete`;
- from interop 6: `application/partial-upload` appends, `Upload-Limit` (lifetime key `expires`,
  `max-age` from interop 7), HEAD/DELETE carrying state fields are refused (up to interop 6);
- an incomplete append answers 201 up to interop 6, 204 from 7; a non-empty append to a completed
  upload is `completed-upload` up to 7, `inconsistent-upload-length` in 8.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch
from rawhttp import RawRequest, RawResponse

from tusd_py.body import BLOCK_SIZE

VERSIONS = (3, 4, 5, 6, 7, 8)
LIMITED = (6, 7, 8)  # Upload-Limit and application/partial-upload exist from interop 6 (-04)
PROBLEM = "https://iana.org/assignments/http-problem-types#"
PARTIAL_UPLOAD = "application/partial-upload"
WEEK = 7 * 24 * 3600  # the default -expiration
PROMPT = 3.0  # a request for a busy upload is answered within this (lock release)
TIMEOUT = 10.0
MiB = 1 << 20


# --- helpers ------------------------------------------------------------------------------------


def draft(version: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Upload-Draft-Interop-Version": str(version), **(extra or {})}


def completeness(version: int, complete: bool) -> dict[str, str]:
    """The request field saying whether the content ends the upload."""
    if version == 3:
        return {"Upload-Incomplete": "?0" if complete else "?1"}
    return {"Upload-Complete": "?1" if complete else "?0"}


def is_complete(version: int, response: httpx.Response | RawResponse) -> bool:
    """The completeness state a response reports (I-2), in the version's field."""
    headers = response.headers
    if version == 3:
        assert "upload-complete" not in headers
        assert headers["upload-incomplete"] in ("?0", "?1")
        return headers["upload-incomplete"] == "?0"
    assert "upload-incomplete" not in headers
    assert headers["upload-complete"] in ("?0", "?1")
    return headers["upload-complete"] == "?1"


def ietf_create(
    client: httpx.Client,
    server: TusServer,
    version: int,
    data: bytes = b"",
    *,
    complete: bool = False,
    length: int | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = draft(version, completeness(version, complete))
    if length is not None:
        h["Upload-Length"] = str(length)
    h.update(headers or {})
    return client.request(method, server.url, content=data, headers=h)


def created(
    client: httpx.Client,
    server: TusServer,
    version: int,
    data: bytes = b"",
    *,
    complete: bool = False,
    length: int | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    response = ietf_create(client, server, version, data, complete=complete, length=length, headers=headers)
    assert response.status_code == 201, response.text
    return response.headers["location"]


def append_headers(version: int, offset: int, complete: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
    h = draft(version, {"Upload-Offset": str(offset), **completeness(version, complete)})
    if version >= 6:
        h["Content-Type"] = PARTIAL_UPLOAD
    h.update(extra or {})
    return h


def ietf_append(
    client: httpx.Client,
    url: str,
    version: int,
    offset: int,
    data: bytes | Iterator[bytes],
    *,
    complete: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.patch(url, content=data, headers=append_headers(version, offset, complete, headers))


def ietf_head(client: httpx.Client, url: str, version: int, extra: dict[str, str] | None = None) -> httpx.Response:
    return client.head(url, headers=draft(version, extra))


def limits(response: httpx.Response) -> dict[str, str]:
    """`Upload-Limit` members (a structured Dictionary of integers, I-4)."""
    members = {}
    for member in response.headers["upload-limit"].split(","):
        key, _, value = member.strip().partition("=")
        members[key] = value
    return members


def problem(response: httpx.Response, status: int, code: str, problem_type: str = "about:blank") -> dict:
    """An RFC 9457 problem details response; its `code` member is the tusd-style error name."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document = response.json()
    assert document["type"] == problem_type
    assert document["status"] == status
    assert document["code"] == code
    assert document["title"]
    return document


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def stored(server: TusServer, url: str) -> bytes:
    return (server.upload_dir / upload_id(url)).read_bytes()


def info_files(server: TusServer) -> set[str]:
    return {path.name for path in server.upload_dir.glob("*.info")}


def sha(name: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(name, data).digest()).decode()


def chunks(data: bytes, size: int = 3) -> Iterator[bytes]:
    """A body sent with Transfer-Encoding: chunked (no Content-Length)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def wait_for_file_size(path: Path, at_least: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while (size := (path.stat().st_size if path.exists() else 0)) < at_least and time.monotonic() < deadline:
        time.sleep(0.005)
    return size


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    """A server with -max-size 1000 (413s and max-size limits)."""
    from conftest import start_server

    srv = start_server(tmp_path_factory.mktemp("ietf-limited") / "uploads", "-max-size", "1000")
    yield srv
    srv.stop()


# --- interop versions (I-VER-*) -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["2", "9", "0", "-6", "abc", "6, 7", "6.0", "?1"])
def test_unsupported_interop_version_is_400_and_creates_nothing(
    server: TusServer, client: httpx.Client, value: str
) -> None:
    # A version we do not speak is a different protocol (the drafts make versions never
    # interoperate): 400 with the versions we do speak, rather than tus 1.0's 412.
    before = info_files(server)
    response = client.post(server.url, headers={"Upload-Draft-Interop-Version": value, "Upload-Complete": "?0"})
    document = problem(response, 400, "ERR_UNSUPPORTED_INTEROP_VERSION")
    assert document["supported-versions"] == list(VERSIONS)
    assert "tus-resumable" not in response.headers
    assert info_files(server) == before


@pytest.mark.parametrize("version", VERSIONS)
def test_responses_echo_the_interop_version_and_carry_no_tus_headers(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    url = created(client, server, version)
    for response in (ietf_head(client, url, version), client.options(server.url, headers=draft(version))):
        assert response.headers["upload-draft-interop-version"] == str(version)
        assert "tus-resumable" not in response.headers
        assert "tus-version" not in response.headers


def test_with_the_protocol_disabled_draft_requests_are_tus_requests(
    make_server: Callable[..., TusServer], client: httpx.Client
) -> None:
    # -enable-experimental-protocol=false: the interop header means nothing (tusd).
    srv = make_server("-enable-experimental-protocol=false")
    response = client.post(srv.url, headers=draft(8, {"Upload-Complete": "?0"}))
    assert response.status_code == 412
    assert response.headers["tus-resumable"] == "1.0.0"
    options = client.options(srv.url, headers=draft(8))
    assert options.headers["tus-version"] == "1.0.0"
    assert "upload-limit" not in options.headers


# --- tus 1.0 is untouched -----------------------------------------------------------------------


_HEX_ID = re.compile(r"[0-9a-f]{32}")
_ETAG = re.compile(r'"([0-9a-f]+)-[0-9a-f]+"')  # "<size hex>-<mtime ns hex>"


class _Normalizer:
    """Responses of two servers made comparable: their origin, upload ids and times (the
    modification time in an ETag too) replaced."""

    def __init__(self, server: TusServer) -> None:
        self.origin = server.origin
        self.ids: dict[str, str] = {}

    def text(self, value: str) -> str:
        value = value.replace(self.origin, "ORIGIN")
        return _HEX_ID.sub(lambda match: self.ids.setdefault(match.group(0), f"<id{len(self.ids)}>"), value)

    def response(self, response: httpx.Response) -> tuple[int, list[tuple[str, str]], str]:
        headers = []
        for name, value in response.headers.items():
            if name in ("date", "last-modified"):
                continue
            if name == "upload-expires":
                assert value.endswith(" GMT")
                value = "<date>"
            if name == "etag":
                etag = _ETAG.fullmatch(value)
                assert etag is not None, value
                value = f'"{etag.group(1)}-<mtime>"'
            headers.append((name, self.text(value)))
        return response.status_code, sorted(headers), self.text(response.content.decode("latin-1"))


def _tus_conversation(client: httpx.Client, srv: TusServer) -> list[tuple[int, list[tuple[str, str]], str]]:
    """A tus 1.0 session touching every endpoint, success and failure."""
    norm = _Normalizer(srv)
    log = []

    def record(response: httpx.Response) -> httpx.Response:
        log.append(norm.response(response))
        return response

    octet = {"Content-Type": "application/offset+octet-stream"}
    record(client.options(srv.url))
    url = record(
        client.post(srv.url, headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "filename YS50eHQ="})
    ).headers["location"]
    record(head(client, url))
    record(patch(client, url, 0, b"hello"))
    record(patch(client, url, 3, b"xx"))  # 409
    record(client.patch(url, content=b"x", headers={**TUS, "Upload-Offset": "5", "Content-Type": "text/plain"}))
    record(client.post(srv.url, headers={"Upload-Length": "1"}))  # 412
    record(client.post(srv.url, headers={**TUS, "Upload-Length": "x"}))  # 400
    record(patch(client, url, 5, b"world", **{"Upload-Checksum": "sha1 " + sha("sha1", b"world")}))
    record(head(client, url))
    record(client.get(url))
    record(client.get(url, headers={"Range": "bytes=2-4"}))
    deferred = record(client.post(srv.url, headers={**TUS, "Upload-Defer-Length": "1"})).headers["location"]
    record(patch(client, deferred, 0, b"abc", **{"Upload-Length": "3"}))
    with_body = record(client.post(srv.url, content=b"abc", headers={**TUS, "Upload-Length": "3", **octet}))
    record(client.delete(with_body.headers["location"], headers=TUS))
    record(head(client, with_body.headers["location"]))
    record(head(client, srv.url + "0" * 32))
    record(client.put(url, headers=TUS))  # 405
    partials = []
    for part in (b"ab", b"cd"):
        partial = record(
            client.post(
                srv.url, content=part, headers={**TUS, "Upload-Length": "2", "Upload-Concat": "partial", **octet}
            )
        )
        partials.append(partial.headers["location"])
    final = record(client.post(srv.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(partials)}))
    record(head(client, final.headers["location"]))
    return log


def test_tus_1_0_responses_are_the_same_with_the_draft_enabled_or_disabled(
    make_server: Callable[..., TusServer], client: httpx.Client
) -> None:
    # The draft lives beside tus 1.0: no tus response may change because of it.
    enabled = _tus_conversation(client, make_server())
    disabled = _tus_conversation(client, make_server("-enable-experimental-protocol=false"))
    assert len(enabled) == 23
    for on, off in zip(enabled, disabled, strict=True):
        assert on == off


# --- OPTIONS (I-5, I-4) -----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("target", ["creation", "upload"])
def test_options_announces_limits_and_the_append_media_type(
    server: TusServer, client: httpx.Client, version: int, target: str
) -> None:
    url = server.url if target == "creation" else server.url + "0" * 32
    response = client.options(url, headers=draft(version))
    assert response.status_code == 200
    if version in LIMITED:
        # "If the server does not apply any limits, it MUST use min-size=0"; -expiration 168h.
        lifetime = "max-age" if version >= 7 else "expires"
        assert limits(response) == {"min-size": "0", lifetime: str(WEEK)}
        assert PARTIAL_UPLOAD in response.headers["accept-patch"]  # -10/-11: MUST
    else:
        assert "upload-limit" not in response.headers  # no such field before -04
        assert "accept-patch" not in response.headers


def test_options_limits_follow_max_size_and_expiration(
    make_server: Callable[..., TusServer], client: httpx.Client
) -> None:
    srv = make_server("-max-size", "5000", "-expiration", "0")
    response = client.options(srv.url, headers=draft(8))
    assert limits(response) == {"min-size": "0", "max-size": "5000"}


# --- creation (I-CRE-*) -------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_creation_with_part_of_the_content_answers_201_with_location(
    server: TusServer, client: httpx.Client, version: int, method: str
) -> None:
    # I-CRE-1 (any method that carries content), I-CRE-3 (201, Location, Upload-Limit), I-CRE-5.
    response = ietf_create(client, server, version, b"hello", length=10, method=method)
    assert response.status_code == 201, response.text
    url = response.headers["location"]
    assert url.startswith(server.url) and len(upload_id(url)) == 32
    assert response.headers["upload-offset"] == "5"
    assert response.headers["upload-length"] == "10"
    assert not is_complete(version, response)
    if version in LIMITED:
        assert limits(response)["min-size"] == "0"
    else:
        assert "upload-limit" not in response.headers
    assert stored(server, url) == b"hello"
    assert ietf_head(client, url, version).headers["upload-offset"] == "5"


@pytest.mark.parametrize("version", VERSIONS)
def test_creation_with_all_of_the_content_completes_the_upload(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-CRE-4: Upload-Complete: ?1 and the content fully received: no resumption needed; our
    # target resource's normal response is 201 + Location, marked complete. Length = Content-Length (I-3).
    # No digest declared: the sha-256 of what was received is reported when asked for (I-DIG-1).
    data = random.Random(version).randbytes(3000)
    response = ietf_create(client, server, version, data, complete=True, headers={"Want-Repr-Digest": "sha-256=10"})
    assert response.status_code == 201, response.text
    assert is_complete(version, response)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == "3000"
    assert response.headers["repr-digest"] == f"sha-256=:{sha('sha256', data)}:"
    url = response.headers["location"]
    state = ietf_head(client, url, version)
    assert is_complete(version, state) and state.headers["upload-length"] == "3000"
    assert state.headers["repr-digest"] == f"sha-256=:{sha('sha256', data)}:"  # recorded once computed
    assert client.get(url).content == data


@pytest.mark.parametrize("version", VERSIONS)
def test_careful_creation_without_content_creates_an_empty_incomplete_upload(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-CRE-1: empty content with ?0 just creates the resource; no length indicated = none recorded.
    response = ietf_create(client, server, version)
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "0"
    assert "upload-length" not in response.headers
    assert not is_complete(version, response)


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_complete_creation_is_an_empty_representation(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    response = ietf_create(client, server, version, complete=True)
    assert response.status_code == 201
    assert is_complete(version, response)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == "0"
    assert client.get(response.headers["location"]).content == b""


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("value", [None, "true", "1", "?2"])
def test_creation_requires_a_boolean_completeness_field(
    server: TusServer, client: httpx.Client, version: int, value: str | None
) -> None:
    before = info_files(server)
    headers = draft(version)
    if value is not None:
        headers["Upload-Incomplete" if version == 3 else "Upload-Complete"] = value
    response = client.post(server.url, content=b"abc", headers=headers)
    problem(response, 400, "ERR_INVALID_UPLOAD_COMPLETE")
    assert info_files(server) == before


@pytest.mark.parametrize("version", VERSIONS)
def test_creation_with_length_indicators_that_disagree_is_400_and_creates_nothing(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-3: Upload-Length and (Upload-Complete: ?1 + Content-Length) MUST match.
    before = info_files(server)
    response = ietf_create(client, server, version, b"hello", complete=True, length=10)
    problem(response, 400, "ERR_INCONSISTENT_UPLOAD_LENGTH", PROBLEM + "inconsistent-upload-length")
    # Content longer than the Upload-Length it declares.
    response = ietf_create(client, server, version, b"hello", length=3)
    problem(response, 400, "ERR_INCONSISTENT_UPLOAD_LENGTH", PROBLEM + "inconsistent-upload-length")
    assert info_files(server) == before


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", ["upload-length", "complete-content", "deferred-content"])
def test_creation_over_max_size_is_413_with_upload_limit(
    limited: TusServer, client: httpx.Client, version: int, case: str
) -> None:
    # I-6: a 413 because of our limits carries them.
    before = info_files(limited)
    body = b"x" * 1001
    if case == "upload-length":
        response = ietf_create(client, limited, version, length=1001)
    else:
        response = ietf_create(client, limited, version, body, complete=case == "complete-content")
    problem(response, 413, "ERR_MAX_SIZE_EXCEEDED")
    if version in LIMITED:
        assert limits(response)["max-size"] == "1000"
    assert info_files(limited) == before


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "10, 11"])
def test_invalid_upload_length_is_refused_until_interop_6_then_ignored(
    server: TusServer, client: httpx.Client, version: int, value: str
) -> None:
    # From -07 (interop 7) "Other values MUST cause the entire header field to be ignored".
    response = ietf_create(client, server, version, headers={"Upload-Length": value})
    if version <= 6:
        problem(response, 400, "ERR_INVALID_UPLOAD_LENGTH")
    else:
        assert response.status_code == 201
        assert "upload-length" not in response.headers


@pytest.mark.parametrize("version", VERSIONS)
def test_creation_carrying_upload_offset_is_refused_until_interop_6(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # -01 to -05: the creation request MUST NOT include Upload-Offset.
    response = ietf_create(client, server, version, headers={"Upload-Offset": "0"})
    if version <= 6:
        problem(response, 400, "ERR_INVALID_OFFSET")
    else:
        assert response.status_code == 201


def test_creation_records_content_type_and_disposition_as_metadata(server: TusServer, client: httpx.Client) -> None:
    # I-CRE-11: representation metadata of the creation applies to the upload (tusd: filetype,
    # filename). filename* (RFC 8187) wins over filename (RFC 6266).
    disposition = "inline; filename=\"plain.txt\"; filename*=UTF-8''na%C3%AFve%20notes.txt"
    headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Disposition": disposition}
    url = created(client, server, 8, b"notes", complete=True, headers=headers)
    tus_state = head(client, url)
    pairs = dict(pair.split(" ") for pair in tus_state.headers["upload-metadata"].split(","))
    assert {key: base64.b64decode(value).decode() for key, value in pairs.items()} == {
        "filetype": "text/plain",
        "filename": "naïve notes.txt",
    }
    download = client.get(url)
    assert download.headers["content-type"].startswith("text/plain")
    assert "filename*=UTF-8''na%C3%AFve%20notes.txt" in download.headers["content-disposition"]


def test_creation_content_types_of_the_protocols_are_not_metadata(server: TusServer, client: httpx.Client) -> None:
    # tus-js-client sends Content-Type: application/partial-upload on a creation with content.
    url = created(client, server, 6, b"abc", complete=True, headers={"Content-Type": PARTIAL_UPLOAD})
    assert "upload-metadata" not in head(client, url).headers


def test_creation_accepts_tus_upload_metadata(server: TusServer, client: httpx.Client) -> None:
    # tus-js-client in draft mode still sends Upload-Metadata.
    metadata = "filename " + base64.b64encode(b"clip.mp4").decode()
    url = created(client, server, 6, headers={"Upload-Metadata": metadata, "Content-Type": "video/mp4"})
    assert (
        head(client, url).headers["upload-metadata"]
        == metadata + ",filetype " + base64.b64encode(b"video/mp4").decode()
    )
    problem(ietf_create(client, server, 6, headers={"Upload-Metadata": "a !!"}), 400, "ERR_INVALID_METADATA")


@pytest.mark.parametrize("version", [3, 6, 8])
def test_cut_creation_keeps_its_bytes_and_length_and_is_not_complete(
    make_server: Callable[..., TusServer], client: httpx.Client, version: int
) -> None:
    # I-CRE-9: an interrupted creation keeps what arrived, not complete; I-CRE-5: the length of
    # `Upload-Complete: ?1` + Content-Length is recorded before the content arrives. No 104 is
    # sent (uvicorn cannot), so the client learns the URL only from a final response; here the
    # test finds it in the upload directory, then resumes.
    srv = make_server()
    data = random.Random(5).randbytes(3 * MiB)
    sent = BLOCK_SIZE + MiB // 2
    headers = draft(version, {**completeness(version, True), "Content-Length": str(len(data))})
    with RawRequest(srv, "POST", srv.url, headers) as request:
        request.send(data[:sent])
        deadline = time.monotonic() + TIMEOUT
        while not list(srv.upload_dir.glob("*.info")) and time.monotonic() < deadline:
            time.sleep(0.005)
        (info,) = srv.upload_dir.glob("*.info")
        wait_for_file_size(srv.upload_dir / info.stem, 1)
    url = srv.url + info.stem
    state = ietf_head(client, url, version)
    assert state.status_code == 204
    offset = int(state.headers["upload-offset"])
    assert 0 < offset <= sent
    assert offset == (srv.upload_dir / info.stem).stat().st_size
    assert state.headers["upload-length"] == str(len(data))
    assert not is_complete(version, state)
    resumed = ietf_append(client, url, version, offset, data[offset:], complete=True)
    assert resumed.status_code == 201 and is_complete(version, resumed)
    assert stored(srv, url) == data


def test_no_interim_response_is_sent_and_100_continue_still_is(server: TusServer) -> None:
    # I-CRE-2: no 104 (ASGI cannot send one); I-104-1: 100 Continue is never skipped.
    headers = draft(8, {"Upload-Complete": "?1", "Content-Length": "5", "Expect": "100-continue"})
    with RawRequest(server, "POST", server.url, headers) as request:
        interim = request.read_response()
        assert interim.status == 100
        request.send(b"hello")
        final = request.read_response()
    assert final.status == 201
    assert final.headers["upload-complete"] == "?1"


# --- offset retrieval (I-OFF-*) -------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_offset_retrieval_reports_offset_completeness_length_and_limits(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-OFF-1: 204 (every draft's example), Upload-Offset, Upload-Complete, Upload-Length,
    # Upload-Limit (from interop 6), Cache-Control: no-store.
    url = created(client, server, version, b"abcd", length=10)
    response = ietf_head(client, url, version)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["upload-offset"] == "4"
    assert response.headers["upload-length"] == "10"
    assert not is_complete(version, response)
    assert response.headers["cache-control"] == "no-store"
    if version in LIMITED:
        members = limits(response)
        lifetime = "max-age" if version >= 7 else "expires"
        assert set(members) == {"min-size", "max-size", lifetime}
        assert members["min-size"] == "0"
        assert members["max-size"] == "10"  # the upload's own length (tusd)
        assert WEEK - 60 <= int(members[lifetime]) <= WEEK
    else:
        assert "upload-limit" not in response.headers


@pytest.mark.parametrize("version", VERSIONS)
def test_offset_retrieval_without_a_recorded_length_has_no_upload_length(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    url = created(client, server, version, b"abc")
    response = ietf_head(client, url, version)
    assert response.headers["upload-offset"] == "3"
    assert "upload-length" not in response.headers
    assert not is_complete(version, response)


@pytest.mark.parametrize("version", VERSIONS)
def test_offset_retrieval_of_a_completed_upload(server: TusServer, client: httpx.Client, version: int) -> None:
    url = created(client, server, version, b"done", complete=True)
    response = ietf_head(client, url, version)
    assert is_complete(version, response)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == "4"
    assert "repr-digest" not in response.headers  # none declared, none asked for: none computed
    if version in LIMITED:
        assert limits(response) == {"min-size": "0", "max-size": "4"}  # completed uploads never expire
    wanted = ietf_head(client, url, version, {"Want-Repr-Digest": "sha-256=10"})
    assert is_complete(version, wanted)
    assert wanted.headers["repr-digest"] == f"sha-256=:{sha('sha256', b'done')}:"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("field", ["Upload-Offset", "completeness", "Upload-Length"])
def test_offset_retrieval_carrying_state_fields(
    server: TusServer, client: httpx.Client, version: int, field: str
) -> None:
    # -01 to -05: a HEAD with Upload-Offset / Upload-Complete (-05 also Upload-Length) MUST get 400.
    url = created(client, server, version)
    extra = completeness(version, False) if field == "completeness" else {field: "0"}
    response = ietf_head(client, url, version, extra)
    refused = version <= 6 and (field != "Upload-Length" or version == 6)
    assert response.status_code == (400 if refused else 204)


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_upload_is_404_problem(server: TusServer, client: httpx.Client, version: int) -> None:
    url = server.url + "0" * 32
    response = ietf_head(client, url, version)
    assert response.status_code == 404 and response.content == b""
    assert "upload-offset" not in response.headers
    problem(ietf_append(client, url, version, 0, b"x"), 404, "ERR_UPLOAD_NOT_FOUND")
    problem(client.delete(url, headers=draft(version)), 404, "ERR_UPLOAD_NOT_FOUND")
    # A hostile id never reaches the filesystem.
    problem(client.delete(server.url + "%2e%2e", headers=draft(version)), 404, "ERR_UPLOAD_NOT_FOUND")


def test_expired_upload_is_410_and_max_age_counts_down(
    make_server: Callable[..., TusServer], client: httpx.Client
) -> None:
    srv = make_server("-expiration", "1s", "-expiration-sweep-interval", "1h")
    response = ietf_create(client, srv, 8, b"abc")
    assert int(limits(response)["max-age"]) <= 1
    url = response.headers["location"]
    deadline = time.monotonic() + TIMEOUT
    while (state := ietf_head(client, url, 8)).status_code == 204 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.status_code == 410
    problem(ietf_append(client, url, 8, 3, b"d"), 410, "ERR_UPLOAD_EXPIRED")


# --- append (I-APP-*) -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_append_then_complete(server: TusServer, client: httpx.Client, version: int) -> None:
    # I-APP-6: an incomplete append is acknowledged with 2xx and ?0 (-01..-05: 201; -06..: 204);
    # I-APP-5: the completing append gets the creation target's response (201 + Location), ?1.
    url = created(client, server, version, length=10)
    first = ietf_append(client, url, version, 0, b"abcd")
    assert first.status_code == (201 if version <= 6 else 204)
    assert first.headers["upload-offset"] == "4"
    assert not is_complete(version, first)
    assert "location" not in first.headers
    last = ietf_append(client, url, version, 4, b"efghij", complete=True)
    assert last.status_code == 201
    assert is_complete(version, last)
    assert last.headers["location"] == url
    assert last.headers["upload-offset"] == last.headers["upload-length"] == "10"
    assert client.get(url).content == b"abcdefghij"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("content_type", [None, "application/offset+octet-stream", PARTIAL_UPLOAD + "; x=1"])
def test_append_media_type(server: TusServer, client: httpx.Client, version: int, content_type: str | None) -> None:
    # From -04 (interop 6) an append is a PATCH with application/partial-upload; else 400 (tusd).
    url = created(client, server, version)
    headers = append_headers(version, 0, False)
    headers.pop("Content-Type", None)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.patch(url, content=b"abc", headers=headers)
    if version in LIMITED and not (content_type or "").startswith(PARTIAL_UPLOAD):
        problem(response, 400, "ERR_INVALID_CONTENT_TYPE")
        assert response.headers["accept-patch"] == PARTIAL_UPLOAD
        assert stored(server, url) == b""
    else:
        assert response.status_code in (201, 204)
        assert stored(server, url) == b"abc"


@pytest.mark.parametrize("offset", [None, "abc", "-1", "1.0", "?1"])
def test_append_requires_an_integer_upload_offset(server: TusServer, client: httpx.Client, offset: str | None) -> None:
    url = created(client, server, 8)
    headers = append_headers(8, 0, False)
    if offset is None:
        del headers["Upload-Offset"]
    else:
        headers["Upload-Offset"] = offset
    problem(client.patch(url, content=b"abc", headers=headers), 400, "ERR_INVALID_OFFSET")


@pytest.mark.parametrize("version", VERSIONS)
def test_append_at_a_mismatching_offset_is_409_with_the_offset(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-APP-3: 409, the correct Upload-Offset, problem type mismatching-upload-offset.
    url = created(client, server, version, b"abcd", length=10)
    response = ietf_append(client, url, version, 7, b"xyz")
    document = problem(response, 409, "ERR_MISMATCHED_OFFSET", PROBLEM + "mismatching-upload-offset")
    assert document["expected-offset"] == 4 and document["provided-offset"] == 7
    assert response.headers["upload-offset"] == "4"
    assert stored(server, url) == b"abcd"


@pytest.mark.parametrize("version", VERSIONS)
def test_append_without_the_completeness_field(server: TusServer, client: httpx.Client, version: int) -> None:
    # -06..-11: the append MUST carry Upload-Complete. -01 (interop 3): an append without
    # Upload-Incomplete ends the upload. -02..-05 (and tusd): one without Upload-Complete does not.
    url = created(client, server, version)
    headers = append_headers(version, 0, False)
    headers.pop("Upload-Incomplete" if version == 3 else "Upload-Complete")
    response = client.patch(url, content=b"abc", headers=headers)
    if version >= 7:
        problem(response, 400, "ERR_INVALID_UPLOAD_COMPLETE")
        assert stored(server, url) == b""
        return
    assert response.headers["upload-offset"] == "3"
    assert is_complete(version, response) == (version == 3)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", ["content-complete", "content-incomplete", "empty-incomplete"])
def test_append_to_a_completed_upload_is_refused(
    server: TusServer, client: httpx.Client, version: int, case: str
) -> None:
    # I-APP-4: a completed upload is never modified. -04..-09: completed-upload (400); -10/-11
    # (interop 8): content for a completed upload is an inconsistent length.
    url = created(client, server, version, b"done", complete=True)
    data = b"" if case.startswith("empty") else b"more"
    response = ietf_append(client, url, version, 4, data, complete=case.endswith("-complete"))
    if version == 8 and data:
        problem(response, 400, "ERR_INCONSISTENT_UPLOAD_LENGTH", PROBLEM + "inconsistent-upload-length")
    else:
        problem(response, 400, "ERR_UPLOAD_COMPLETED", PROBLEM + "completed-upload")
    assert stored(server, url) == b"done"


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_completing_append_after_all_bytes_completes_and_replays(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-APP-1: an empty append with ?1 completes an upload whose data all arrived; the same
    # request again gets the final response again ([ED] "replay").
    url = created(client, server, version, length=4)
    ietf_append(client, url, version, 0, b"abcd")
    for _ in range(2):
        response = ietf_append(client, url, version, 4, b"", complete=True)
        assert response.status_code == 201
        assert is_complete(version, response)
        assert response.headers["location"] == url
    assert stored(server, url) == b"abcd"


@pytest.mark.parametrize("version", VERSIONS)
def test_append_length_indicators_must_match_the_recorded_length(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-3 / I-APP-7: refused before a byte is read, nothing appended.
    url = created(client, server, version, b"abcd", length=10)
    inconsistent = [
        ietf_append(client, url, version, 4, b"efg", complete=True),  # would end at 7, length 10
        ietf_append(client, url, version, 4, b"efg", headers={"Upload-Length": "11"}),
        ietf_append(client, url, version, 4, b"efghijklm"),  # past the length
    ]
    for response in inconsistent:
        problem(response, 400, "ERR_INCONSISTENT_UPLOAD_LENGTH", PROBLEM + "inconsistent-upload-length")
    assert stored(server, url) == b"abcd"
    same = ietf_append(client, url, version, 4, b"ef", headers={"Upload-Length": "10"})
    assert same.headers["upload-offset"] == "6"


@pytest.mark.parametrize("version", VERSIONS)
def test_append_records_a_length_not_known_before(server: TusServer, client: httpx.Client, version: int) -> None:
    # I-APP-7: "MUST record the length" from Upload-Length, or ?1 + Content-Length.
    by_field = created(client, server, version, b"ab")
    response = ietf_append(client, by_field, version, 2, b"cd", headers={"Upload-Length": "6"})
    assert response.headers["upload-length"] == "6" and not is_complete(version, response)
    assert ietf_head(client, by_field, version).headers["upload-length"] == "6"
    problem(
        ietf_append(client, by_field, version, 4, b"e", headers={"Upload-Length": "7"}),
        400,
        "ERR_INCONSISTENT_UPLOAD_LENGTH",
        PROBLEM + "inconsistent-upload-length",
    )
    by_content = created(client, server, version, b"ab")
    response = ietf_append(client, by_content, version, 2, b"cde", complete=True)
    assert is_complete(version, response) and response.headers["upload-length"] == "5"
    # Refused content records nothing: the length stays unknown.
    unrecorded = created(client, server, version, b"ab")
    problem(
        ietf_append(client, unrecorded, version, 2, b"cdefgh", headers={"Upload-Length": "5"}),
        400,
        "ERR_INCONSISTENT_UPLOAD_LENGTH",
        PROBLEM + "inconsistent-upload-length",
    )
    assert "upload-length" not in ietf_head(client, unrecorded, version).headers
    shrinking = created(client, server, version, b"abc")
    problem(
        ietf_append(client, shrinking, version, 3, b"", headers={"Upload-Length": "2"}),
        400,
        "ERR_INCONSISTENT_UPLOAD_LENGTH",
        PROBLEM + "inconsistent-upload-length",
    )


def test_append_over_max_size_is_413_with_upload_limit(limited: TusServer, client: httpx.Client) -> None:
    url = created(client, limited, 8, b"abc")
    response = ietf_append(client, url, 8, 3, b"x" * 998)
    problem(response, 413, "ERR_MAX_SIZE_EXCEEDED")
    assert limits(response)["max-size"] == "1000"
    problem(ietf_append(client, url, 8, 3, b"", headers={"Upload-Length": "1001"}), 413, "ERR_MAX_SIZE_EXCEEDED")
    assert stored(limited, url) == b"abc"


@pytest.mark.parametrize("version", VERSIONS)
def test_chunked_completing_append_records_the_length_at_its_end(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # No Content-Length: the length is the offset once the whole content arrived.
    url = created(client, server, version, b"ab")
    response = ietf_append(client, url, version, 2, chunks(b"cdefghij"), complete=True)
    assert response.status_code == 201
    assert is_complete(version, response)
    assert response.headers["upload-length"] == "10"
    assert client.get(url).content == b"abcdefghij"


@pytest.mark.parametrize("version", VERSIONS)
def test_chunked_completing_append_short_of_the_length_is_inconsistent(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    url = created(client, server, version, length=10)
    response = ietf_append(client, url, version, 0, chunks(b"abc"), complete=True)
    problem(response, 400, "ERR_INCONSISTENT_UPLOAD_LENGTH", PROBLEM + "inconsistent-upload-length")
    state = ietf_head(client, url, version)
    assert state.headers["upload-offset"] == "3" and not is_complete(version, state)


@pytest.mark.parametrize("version", VERSIONS)
def test_chunked_content_past_the_length_invalidates_the_upload(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # I-APP-7: "rejecting the request once the offset exceeds the length, marking the upload
    # resource invalid and rejecting any further interaction with it".
    url = created(client, server, version, length=10)
    response = ietf_append(client, url, version, 0, chunks(b"abcdefghijkl"))
    problem(response, 400, "ERR_INCONSISTENT_UPLOAD_LENGTH", PROBLEM + "inconsistent-upload-length")
    assert ietf_head(client, url, version).status_code == 404
    assert not (server.upload_dir / upload_id(url)).exists()


@pytest.mark.parametrize("version", [3, 6, 8])
def test_cut_append_keeps_its_bytes_and_is_not_complete(server: TusServer, client: httpx.Client, version: int) -> None:
    # I-APP-2: as much as arrived is appended, and the upload is not complete.
    data = random.Random(6).randbytes(3 * MiB)
    url = created(client, server, version, length=len(data))
    sent = BLOCK_SIZE + MiB // 2
    headers = append_headers(version, 0, True, {"Content-Length": str(len(data))})
    with RawRequest(server, "PATCH", url, headers) as request:
        request.send(data[:sent])
        wait_for_file_size(server.upload_dir / upload_id(url), 1)
    state = ietf_head(client, url, version)
    offset = int(state.headers["upload-offset"])
    assert 0 < offset <= sent and offset == len(stored(server, url))
    assert not is_complete(version, state)
    assert stored(server, url) == data[:offset]
    assert ietf_append(client, url, version, offset, data[offset:], complete=True).status_code == 201
    assert stored(server, url) == data


# --- cancellation (I-CAN-*) -----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_cancellation_removes_the_upload(server: TusServer, client: httpx.Client, version: int) -> None:
    url = created(client, server, version, b"abc", length=10)
    response = client.delete(url, headers=draft(version))
    assert response.status_code == 204
    assert ietf_head(client, url, version).status_code == 404
    assert not (server.upload_dir / upload_id(url)).exists()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("field", ["Upload-Offset", "completeness"])
def test_cancellation_carrying_state_fields(server: TusServer, client: httpx.Client, version: int, field: str) -> None:
    # -01 to -05: a DELETE with Upload-Offset or Upload-Complete MUST get 400.
    url = created(client, server, version, b"abc")
    extra = completeness(version, False) if field == "completeness" else {field: "3"}
    response = client.delete(url, headers=draft(version, extra))
    if version <= 6:
        problem(response, 400, "ERR_INVALID_REQUEST")
        assert ietf_head(client, url, version).status_code == 204
    else:
        assert response.status_code == 204


def test_cancellation_disabled_is_405(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    # -05: "If the server does not support cancellation, it MUST respond with 405".
    srv = make_server("-disable-termination")
    url = created(client, srv, 6)
    response = client.delete(url, headers=draft(6))
    problem(response, 405, "ERR_METHOD_NOT_ALLOWED")
    assert "DELETE" not in response.headers["allow"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_creation_url_allows_only_options_and_content_methods(
    server: TusServer, client: httpx.Client, method: str
) -> None:
    response = client.request(method, server.url, headers=draft(8))
    assert response.status_code == 405
    assert response.headers["allow"] == "OPTIONS, POST, PUT, PATCH"


# --- concurrency (I-CONC-*) -------------------------------------------------------------------------


def _stuck_append(server: TusServer, url: str, version: int, data: bytes) -> RawRequest:
    """An append that sent one block and more, then nothing (the client stays): it holds the lock."""
    headers = append_headers(version, 0, True, {"Content-Length": str(len(data))})
    stuck = RawRequest(server, "PATCH", url, headers)
    stuck.send(data[: BLOCK_SIZE + 1000])
    assert wait_for_file_size(server.upload_dir / upload_id(url), 1) > 0
    return stuck


@pytest.mark.parametrize("version", [5, 6, 8])
def test_offset_retrieval_interrupts_a_stuck_append(server: TusServer, client: httpx.Client, version: int) -> None:
    # I-CONC-4: a new HEAD terminates the running append first (no waiting for its timeout);
    # I-CONC-3: the offset it reports is accepted by the next append.
    data = random.Random(7).randbytes(2 * BLOCK_SIZE)
    url = created(client, server, version, length=len(data))
    with _stuck_append(server, url, version, data) as stuck:
        started = time.monotonic()
        state = ietf_head(client, url, version)
        assert time.monotonic() - started < PROMPT
        assert state.status_code == 204
        offset = int(state.headers["upload-offset"])
        assert offset == len(stored(server, url)) > 0
        interrupted = stuck.read_response(started + PROMPT)
    assert interrupted.status == 400
    assert interrupted.headers["content-type"] == "application/problem+json"
    assert json.loads(interrupted.body)["code"] == "ERR_UPLOAD_INTERRUPTED"
    resumed = ietf_append(client, url, version, offset, data[offset:], complete=True)
    assert resumed.status_code == 201 and is_complete(version, resumed)
    assert stored(server, url) == data


def test_cancellation_interrupts_a_stuck_append(server: TusServer, client: httpx.Client) -> None:
    # I-CAN-2: in-flight requests are terminated before the DELETE is answered.
    data = random.Random(8).randbytes(2 * BLOCK_SIZE)
    url = created(client, server, 8, length=len(data))
    with _stuck_append(server, url, 8, data) as stuck:
        started = time.monotonic()
        assert client.delete(url, headers=draft(8)).status_code == 204
        assert time.monotonic() - started < PROMPT
        stuck.read_response(started + PROMPT)
    assert ietf_head(client, url, 8).status_code == 404


# --- digests (I-DIG-1) -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 6, 8])
def test_repr_digest_declared_at_creation_is_verified_and_reported(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    data = b"resumable " * 50
    declared = {"Repr-Digest": f"sha-512=:{sha('sha512', data)}:"}
    url = created(client, server, version, data[:100], length=len(data), headers=declared)
    response = ietf_append(client, url, version, 100, data[100:], complete=True)
    assert response.status_code == 201
    assert response.headers["repr-digest"] == f"sha-512=:{sha('sha512', data)}:"  # the declared one, verified
    wanted = ietf_head(client, url, version, {"Want-Repr-Digest": "sha-512=10, sha-256=1"})
    assert wanted.headers["repr-digest"] == f"sha-512=:{sha('sha512', data)}:"
    other = ietf_head(client, url, version, {"Want-Repr-Digest": "sha-512=1, sha-256=10"})
    assert other.headers["repr-digest"] == f"sha-256=:{sha('sha256', data)}:"


def test_want_repr_digest_chooses_the_algorithm_of_the_completing_response(
    server: TusServer, client: httpx.Client
) -> None:
    want = {"Want-Repr-Digest": "md5=2, sha=9"}
    response = ietf_create(client, server, 8, b"abc", complete=True, headers=want)
    assert response.headers["repr-digest"] == f"sha=:{sha('sha1', b'abc')}:"
    url = created(client, server, 8, b"ab")
    response = ietf_append(client, url, 8, 2, b"c", complete=True, headers={"Want-Repr-Digest": "md5=5"})
    assert response.headers["repr-digest"] == f"md5=:{sha('md5', b'abc')}:"


@pytest.mark.parametrize("version", [3, 6, 8])
def test_repr_digest_mismatch_fails_and_removes_the_upload(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    # "the server SHOULD consider the upload failed, not process the representation further,
    # and signal the failure": 400 marked complete (the representation was fully received).
    wrong = {"Repr-Digest": f"sha-256=:{sha('sha256', b'other')}:"}
    url = created(client, server, version, b"ab", headers=wrong)
    response = ietf_append(client, url, version, 2, b"cd", complete=True)
    problem(response, 400, "ERR_CHECKSUM_MISMATCH")
    assert is_complete(version, response)
    assert ietf_head(client, url, version).status_code == 404
    before = info_files(server)
    response = ietf_create(client, server, version, b"abcd", complete=True, headers=wrong)
    problem(response, 400, "ERR_CHECKSUM_MISMATCH")
    assert info_files(server) == before


def test_content_digest_verifies_one_request(server: TusServer, client: httpx.Client) -> None:
    # RFC 9530 Content-Digest covers one request's content: on mismatch nothing is appended.
    url = created(client, server, 8, b"ab")
    bad = ietf_append(client, url, 8, 2, b"cd", headers={"Content-Digest": f"sha-256=:{sha('sha256', b'xx')}:"})
    problem(bad, 400, "ERR_CHECKSUM_MISMATCH")
    assert bad.headers["upload-offset"] == "2" and stored(server, url) == b"ab"
    good = ietf_append(client, url, 8, 2, b"cd", headers={"Content-Digest": f"sha-512=:{sha('sha512', b'cd')}:"})
    assert good.headers["upload-offset"] == "4"
    unknown = ietf_append(client, url, 8, 4, b"ef", headers={"Content-Digest": "blake3=:AAAA:"})
    assert unknown.headers["upload-offset"] == "6"  # unknown algorithms are ignored
    malformed = ietf_append(client, url, 8, 6, b"gh", headers={"Content-Digest": "sha-256=abc"})
    problem(malformed, 400, "ERR_INVALID_DIGEST")
    assert stored(server, url) == b"abcdef"


# --- both protocols on one storage ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 5, 6, 8])
def test_tus_upload_inspected_and_finished_with_the_draft(
    server: TusServer, client: httpx.Client, version: int
) -> None:
    url = create(client, server, 10)
    assert patch(client, url, 0, b"abcd").status_code == 204
    state = ietf_head(client, url, version)
    assert state.status_code == 204
    assert state.headers["upload-offset"] == "4" and state.headers["upload-length"] == "10"
    assert not is_complete(version, state)
    assert ietf_append(client, url, version, 4, b"efghij", complete=True).status_code == 201
    tus_state = head(client, url)
    assert tus_state.headers["upload-offset"] == tus_state.headers["upload-length"] == "10"
    assert client.get(url).content == b"abcdefghij"


@pytest.mark.parametrize("version", [3, 6, 8])
def test_draft_upload_inspected_and_finished_with_tus(server: TusServer, client: httpx.Client, version: int) -> None:
    url = created(client, server, version, b"abcd")
    tus_state = head(client, url)
    assert tus_state.status_code == 200
    assert tus_state.headers["tus-resumable"] == "1.0.0"
    assert tus_state.headers["upload-offset"] == "4"
    assert tus_state.headers["upload-defer-length"] == "1"
    assert patch(client, url, 4, b"efghij", **{"Upload-Length": "10"}).status_code == 204
    state = ietf_head(client, url, version)
    assert is_complete(version, state) and state.headers["upload-length"] == "10"
    assert client.get(url).content == b"abcdefghij"


def test_final_concatenation_is_a_completed_upload_for_the_draft(server: TusServer, client: httpx.Client) -> None:
    octet = {"Content-Type": "application/offset+octet-stream"}
    partials = []
    for part in (b"ab", b"cd"):
        response = client.post(
            server.url, content=part, headers={**TUS, "Upload-Length": "2", "Upload-Concat": "partial", **octet}
        )
        partials.append(response.headers["location"])
    final = client.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(partials)})
    url = final.headers["location"]
    state = ietf_head(client, url, 8)
    assert state.headers["upload-complete"] == "?1" and state.headers["upload-length"] == "4"
    problem(ietf_append(client, url, 6, 4, b"e"), 400, "ERR_UPLOAD_COMPLETED", PROBLEM + "completed-upload")


def test_draft_uploads_count_in_the_metrics(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    srv = make_server()
    url = created(client, srv, 8, b"ab")
    ietf_append(client, url, 8, 2, b"cd", complete=True)
    ietf_append(client, url, 8, 0, b"x")  # 409
    text = client.get(srv.origin + "/metrics").text
    assert re.search(r"^tusd_uploads_created(_total)? 1\.0$", text, re.M)
    assert re.search(r"^tusd_uploads_finished(_total)? 1\.0$", text, re.M)
    assert re.search(r'^tusd_errors_total\{code="ERR_MISMATCHED_OFFSET",status="409"\} 1\.0$', text, re.M)
    assert re.search(r"^tusd_bytes_received(_total)? 4\.0$", text, re.M)


_HOOK = """#!{python}
import json, sys
payload = json.load(sys.stdin)
event = {event!r}
if event == "pre-create" and payload["Event"]["Upload"]["MetaData"].get("filename") == "reject.bin":
    print(json.dumps({{"RejectUpload": True}}))
elif event == "pre-finish" and payload["Event"]["Upload"]["MetaData"].get("filename") == "fail.bin":
    sys.exit(1)
elif event == "pre-finish":
    body = json.dumps({{"id": payload["Event"]["Upload"]["ID"], "size": payload["Event"]["Upload"]["Size"]}})
    print(json.dumps({{"HTTPResponse": {{"StatusCode": 200, "Body": body,
                                        "Header": {{"Content-Type": "application/json"}}}}}}))
"""


def test_hooks_run_for_draft_uploads_and_pre_finish_shapes_the_final_response(
    make_server: Callable[..., TusServer], client: httpx.Client, tmp_path: Path
) -> None:
    # I-APP-5: the completing response is "what the resource targeted by the creation would have
    # generated": a pre-finish hook's HTTPResponse is exactly that, and the response stays ?1.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for event in ("pre-create", "pre-finish"):
        script = hooks / event
        script.write_text(_HOOK.format(python=sys.executable, event=event))
        script.chmod(0o755)
    srv = make_server("-hooks-dir", str(hooks), "-hooks-enabled-events", "pre-create,pre-finish")
    rejected = ietf_create(client, srv, 8, headers={"Content-Disposition": 'inline; filename="reject.bin"'})
    problem(rejected, 400, "ERR_UPLOAD_REJECTED")
    url = created(client, srv, 8, b"ab", length=4)
    response = ietf_append(client, url, 8, 2, b"cd", complete=True)
    assert response.status_code == 200
    assert response.headers["upload-complete"] == "?1"
    assert response.json() == {"id": upload_id(url), "size": 4}
    # A failing pre-finish hook is a failure to process the received representation: still ?1.
    failing = created(client, srv, 8, b"ab", length=4, headers={"Content-Disposition": 'inline; filename="fail.bin"'})
    response = ietf_append(client, failing, 8, 2, b"cd", complete=True)
    problem(response, 500, "ERR_HOOK_FAILED")
    assert response.headers["upload-complete"] == "?1"
