"""Whole-file checksums declared at creation and verified on completion
(spec_notes/whole-file-checksum.md; no tus 1.0 rule, spec-checklist section 6.1/6.3).

Declared as metadata `checksum` = `<algo> <hex or base64>` (oCIS convention, what Uppy,
tus-js-client and tuspy can send) and/or RFC 9530 `Repr-Digest`. A mismatch answers 460
ERR_CHECKSUM_MISMATCH at the completing request and the upload never looks complete: a PATCHed
upload goes back to offset 0 (same URL retried), one created in a single request is removed.

Only the declared algorithms are hashed while bytes arrive. A finished upload reports a recorded
digest (sha-256 first, else the first declared) unasked, none if nothing is recorded, and any
supported algorithm a client asks for with Want-Repr-Digest (computed once, then recorded).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

DATA = random.Random(11).randbytes(300_000)
WRONG = DATA[:-1] + bytes([DATA[-1] ^ 1])  # same length, last byte differs
HTTP_NAMES = {"md5": "md5", "sha1": "sha", "sha256": "sha-256", "sha512": "sha-512"}
EMPTY_SHA256 = base64.b64encode(hashlib.sha256(b"").digest()).decode()


# --- helpers ---------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def metadata(**pairs: str | None) -> str:
    """An Upload-Metadata header; a None value gives a key without a value."""
    return ",".join(key if value is None else f"{key} {b64(value.encode())}" for key, value in pairs.items())


def checksum_metadata(algorithm: str, data: bytes, *, hex_form: bool = True, spelling: str | None = None) -> str:
    digest = hashlib.new(algorithm, data).digest()
    return f"{spelling or algorithm} {digest.hex() if hex_form else b64(digest)}"


def repr_digest(algorithm: str, data: bytes) -> str:
    return f"{HTTP_NAMES[algorithm]}=:{b64(hashlib.new(algorithm, data).digest())}:"


def sha256_field(data: bytes) -> str:
    return repr_digest("sha256", data)


WANT_SHA256 = {**TUS, "Want-Repr-Digest": "sha-256=10"}


def reported_unasked(declared: tuple[str, ...]) -> str | None:
    """The algorithm a finished upload reports without Want-Repr-Digest, if only the declared
    digests are recorded: sha-256 if declared, else the first declared, else none."""
    return "sha256" if "sha256" in declared else next(iter(declared), None)


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def stored_info(server: TusServer, url: str) -> dict:
    return json.loads((server.upload_dir / f"{upload_id(url)}.info").read_text())


def entries(server: TusServer) -> set[str]:
    return {path.name for path in server.upload_dir.iterdir()}


def assert_complete(client: httpx.Client, url: str, data: bytes, *, reports: str | None) -> None:
    """Complete, and the stored bytes are `data`: unasked, Repr-Digest is the recorded digest of
    `reports` (None: no header); asked for sha-256, the right one (which records it)."""
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(len(data))
    if reports is None:
        assert "repr-digest" not in response.headers
    else:
        assert response.headers["repr-digest"] == repr_digest(reports, data)
    asked = client.head(url, headers=WANT_SHA256)
    assert asked.status_code == 200
    assert asked.headers["repr-digest"] == sha256_field(data)


def assert_reset(client: httpx.Client, url: str, length: int) -> None:
    """After a mismatch the upload must not look complete: offset 0, length kept, no digest
    (not even when asked for one)."""
    for headers in (TUS, WANT_SHA256):
        response = client.head(url, headers=headers)
        assert response.status_code == 200
        assert response.headers["upload-offset"] == "0"
        assert response.headers["upload-length"] == str(length)
        assert "repr-digest" not in response.headers
    assert client.get(url).status_code == 404  # nothing to download


def assert_mismatch(response: httpx.Response) -> None:
    assert response.status_code == 460, response.text
    assert response.text.startswith("ERR_CHECKSUM_MISMATCH")


def upload_in_chunks(client: httpx.Client, url: str, data: bytes, chunks: int = 3) -> httpx.Response:
    """PATCH `data` in several requests; returns the last (completing) response."""
    size = -(-len(data) // chunks)
    offset = 0
    while True:
        response = patch(client, url, offset, data[offset : offset + size])
        offset += size
        if offset >= len(data):
            return response
        assert response.status_code == 204, response.text


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    """A server whose directory only this module touches, to check that nothing was created."""
    srv = start_server(tmp_path_factory.mktemp("whole-file") / "uploads")
    yield srv
    srv.stop()


# --- declaring: each form, right and wrong -----------------------------------------------------

# name -> (headers declaring a digest of the given bytes, algorithms declared, in the order
# declared: metadata first, then Repr-Digest's members)
Declare = Callable[[bytes], dict[str, str]]
DECLARATIONS: dict[str, tuple[Declare, tuple[str, ...]]] = {
    **{
        f"metadata-hex-{a}": ((lambda d, a=a: {"Upload-Metadata": metadata(checksum=checksum_metadata(a, d))}), (a,))
        for a in HTTP_NAMES
    },
    **{
        f"metadata-base64-{a}": (
            (lambda d, a=a: {"Upload-Metadata": metadata(checksum=checksum_metadata(a, d, hex_form=False))}),
            (a,),
        )
        for a in HTTP_NAMES
    },
    "metadata-SHA256-uppercase": (
        lambda d: {"Upload-Metadata": metadata(checksum=checksum_metadata("sha256", d, spelling="SHA256"))},
        ("sha256",),
    ),
    "metadata-SHA-512-dash-uppercase-hex": (
        lambda d: {"Upload-Metadata": metadata(checksum=f"SHA-512 {hashlib.sha512(d).hexdigest().upper()}")},
        ("sha512",),
    ),
    **{f"repr-digest-{HTTP_NAMES[a]}": ((lambda d, a=a: {"Repr-Digest": repr_digest(a, d)}), (a,)) for a in HTTP_NAMES},
    "repr-digest-two-members": (
        lambda d: {"Repr-Digest": f"{repr_digest('sha512', d)}, {repr_digest('md5', d)}"},
        ("sha512", "md5"),
    ),
    "both-forms-same-algorithm": (
        lambda d: {
            "Upload-Metadata": metadata(checksum=checksum_metadata("sha256", d)),
            "Repr-Digest": repr_digest("sha256", d),
        },
        ("sha256",),
    ),
    "both-forms-different-algorithms": (
        lambda d: {
            "Upload-Metadata": metadata(filename="a.bin", checksum=checksum_metadata("sha1", d, hex_form=False)),
            "Repr-Digest": repr_digest("sha512", d),
        },
        ("sha1", "sha512"),
    ),
}


@pytest.mark.parametrize("name", DECLARATIONS)
def test_declared_checksum_verified_on_completion(server: TusServer, client: httpx.Client, name: str) -> None:
    declare, algorithms = DECLARATIONS[name]
    url = create(client, server, len(DATA), **declare(DATA))
    response = upload_in_chunks(client, url, DATA)
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(len(DATA))
    expected = {a: b64(hashlib.new(a, DATA).digest()) for a in (*algorithms, "sha256")}
    recorded = stored_info(server, url)
    assert recorded["Finished"] is True
    assert recorded["Digests"] == {a: expected[a] for a in algorithms}  # every declared algorithm, only those
    assert recorded["DeclaredDigests"] == {a: expected[a] for a in algorithms}
    assert_complete(client, url, DATA, reports=reported_unasked(algorithms))
    assert stored_info(server, url)["Digests"] == expected  # sha-256 recorded once asked for


@pytest.mark.parametrize("name", DECLARATIONS)
def test_declared_checksum_mismatch_resets_the_upload_and_same_url_retries(
    server: TusServer, client: httpx.Client, name: str
) -> None:
    declare, algorithms = DECLARATIONS[name]
    url = create(client, server, len(DATA), **declare(DATA))
    assert_mismatch(upload_in_chunks(client, url, WRONG))  # only the completing PATCH fails
    assert_reset(client, url, len(DATA))
    data_file = server.upload_dir / upload_id(url)
    assert data_file.stat().st_size == 0
    assert "Digests" not in stored_info(server, url)
    assert "Finished" not in stored_info(server, url)
    # The client sends the file again to the same URL.
    response = upload_in_chunks(client, url, DATA, chunks=2)
    assert response.status_code == 204, response.text
    assert_complete(client, url, DATA, reports=reported_unasked(algorithms))
    assert data_file.read_bytes() == DATA


def test_single_patch_mismatch_then_retry(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, len(DATA), **{"Repr-Digest": sha256_field(DATA)})
    assert_mismatch(patch(client, url, 0, WRONG))
    assert_reset(client, url, len(DATA))
    # A PATCH at the old end offset is refused: the upload really is back at 0.
    response = patch(client, url, len(DATA), b"")
    assert response.status_code == 409 and response.headers["upload-offset"] == "0"
    assert patch(client, url, 0, DATA).status_code == 204
    assert_complete(client, url, DATA, reports="sha256")


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_upload_without_declaration_reports_sha256_only_when_asked(
    server: TusServer, client: httpx.Client, method: str
) -> None:
    url = create(client, server, len(DATA))
    assert upload_in_chunks(client, url, DATA).status_code == 204
    recorded = stored_info(server, url)
    assert "DeclaredDigests" not in recorded
    assert "Digests" not in recorded  # nothing hashed while the bytes arrived
    assert recorded["Finished"] is True
    unasked = client.request(method, url, headers=TUS)
    assert unasked.status_code == 200
    assert "repr-digest" not in unasked.headers
    asked = client.request(method, url, headers=WANT_SHA256)
    assert asked.status_code == 200
    assert asked.headers["repr-digest"] == sha256_field(DATA)
    # Computed from the stored bytes once, recorded, and reported unasked from then on.
    assert stored_info(server, url)["Digests"] == {"sha256": b64(hashlib.sha256(DATA).digest())}
    assert client.request(method, url, headers=TUS).headers["repr-digest"] == sha256_field(DATA)
    assert_complete(client, url, DATA, reports="sha256")


def test_unfinished_upload_has_no_repr_digest(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, len(DATA), **{"Repr-Digest": sha256_field(DATA)})
    assert patch(client, url, 0, DATA[:1000]).status_code == 204
    for headers in (TUS, WANT_SHA256):
        response = client.head(url, headers=headers)
        assert response.headers["upload-offset"] == "1000"
        assert "repr-digest" not in response.headers


# --- every place an upload can complete --------------------------------------------------------


def test_creation_with_upload_completing_is_verified(server: TusServer, client: httpx.Client) -> None:
    headers = {
        **TUS,
        "Upload-Length": str(len(DATA)),
        "Content-Type": "application/offset+octet-stream",
        "Upload-Metadata": metadata(checksum=checksum_metadata("sha512", DATA)),
    }
    response = client.post(server.url, content=DATA, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == str(len(DATA))
    assert_complete(client, response.headers["location"], DATA, reports="sha512")


@pytest.mark.parametrize("form", ["metadata", "repr-digest"])
def test_creation_with_upload_mismatch_answers_460_and_creates_nothing(
    own_server: TusServer, client: httpx.Client, form: str
) -> None:
    declared = (
        {"Upload-Metadata": metadata(checksum=checksum_metadata("sha256", DATA))}
        if form == "metadata"
        else {"Repr-Digest": sha256_field(DATA)}
    )
    before = entries(own_server)
    headers = {**TUS, "Upload-Length": str(len(DATA)), "Content-Type": "application/offset+octet-stream", **declared}
    assert_mismatch(client.post(own_server.url, content=WRONG, headers=headers))
    assert entries(own_server) == before


def test_creation_with_partial_body_is_verified_by_the_completing_patch(
    server: TusServer, client: httpx.Client
) -> None:
    headers = {
        **TUS,
        "Upload-Length": str(len(DATA)),
        "Content-Type": "application/offset+octet-stream",
        "Repr-Digest": sha256_field(DATA),
    }
    response = client.post(server.url, content=WRONG[:1000], headers=headers)
    assert response.status_code == 201 and response.headers["upload-offset"] == "1000"
    url = response.headers["location"]
    assert_mismatch(patch(client, url, 1000, WRONG[1000:]))
    assert_reset(client, url, len(DATA))
    assert patch(client, url, 0, DATA).status_code == 204
    assert_complete(client, url, DATA, reports="sha256")


def test_zero_length_upload_with_digest_of_empty(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 0, **{"Upload-Metadata": metadata(checksum=checksum_metadata("md5", b""))})
    assert head(client, url).headers["repr-digest"] == f"md5=:{b64(hashlib.md5(b'').digest())}:"
    assert client.head(url, headers=WANT_SHA256).headers["repr-digest"] == f"sha-256=:{EMPTY_SHA256}:"
    assert_complete(client, url, b"", reports="sha256")  # sha-256 now recorded: reported first


@pytest.mark.parametrize(
    "declared",
    [
        {"Upload-Metadata": metadata(checksum=checksum_metadata("md5", b"x"))},
        {"Repr-Digest": sha256_field(b"x")},
    ],
    ids=["metadata", "repr-digest"],
)
def test_zero_length_upload_with_wrong_digest_answers_460_and_creates_nothing(
    own_server: TusServer, client: httpx.Client, declared: dict[str, str]
) -> None:
    before = entries(own_server)
    response = client.post(own_server.url, headers={**TUS, "Upload-Length": "0", **declared})
    assert_mismatch(response)
    assert "location" not in response.headers
    assert entries(own_server) == before


def test_deferred_length_declared_equal_to_offset_is_verified(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None, **{"Repr-Digest": sha256_field(DATA)})
    assert patch(client, url, 0, DATA).status_code == 204
    assert "repr-digest" not in head(client, url).headers
    response = patch(client, url, len(DATA), b"", **{"Upload-Length": str(len(DATA))})
    assert response.status_code == 204, response.text
    assert_complete(client, url, DATA, reports="sha256")


def test_deferred_length_declared_equal_to_offset_mismatch_resets(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None, **{"Upload-Metadata": metadata(checksum=checksum_metadata("sha1", DATA))})
    assert patch(client, url, 0, WRONG).status_code == 204
    assert_mismatch(patch(client, url, len(DATA), b"", **{"Upload-Length": str(len(DATA))}))
    assert_reset(client, url, len(DATA))  # the declared length stays
    assert patch(client, url, 0, DATA).status_code == 204
    assert_complete(client, url, DATA, reports="sha1")


def test_deferred_length_declared_with_the_last_bytes_mismatch(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None, **{"Repr-Digest": sha256_field(DATA)})
    assert patch(client, url, 0, WRONG[:5000]).status_code == 204
    assert_mismatch(patch(client, url, 5000, WRONG[5000:], **{"Upload-Length": str(len(DATA))}))
    assert_reset(client, url, len(DATA))


def _partials(client: httpx.Client, server: TusServer, parts: list[bytes]) -> list[str]:
    urls = []
    for part in parts:
        url = create(client, server, len(part), **{"Upload-Concat": "partial"})
        assert patch(client, url, 0, part).status_code == 204
        urls.append(url)
    return urls


def test_final_concatenation_with_checksum(server: TusServer, client: httpx.Client) -> None:
    parts = [DATA[:100_000], DATA[100_000:]]
    urls = _partials(client, server, parts)
    response = client.post(
        server.url,
        headers={
            **TUS,
            "Upload-Concat": "final;" + " ".join(urls),
            "Upload-Metadata": metadata(checksum=checksum_metadata("sha256", DATA, hex_form=False)),
        },
    )
    assert response.status_code == 201, response.text
    assert_complete(client, response.headers["location"], DATA, reports="sha256")


def test_final_concatenation_checksum_mismatch_removes_final_keeps_partials(
    own_server: TusServer, client: httpx.Client
) -> None:
    parts = [DATA[:100_000], DATA[100_000:]]
    urls = _partials(client, own_server, parts)
    before = entries(own_server)
    concat = "final;" + " ".join(reversed(urls))  # wrong order: the wrong bytes
    declared = {"Upload-Metadata": metadata(checksum=checksum_metadata("sha256", DATA))}
    response = client.post(own_server.url, headers={**TUS, "Upload-Concat": concat, **declared})
    assert_mismatch(response)
    assert entries(own_server) == before  # the final is gone
    for url, part in zip(urls, parts, strict=True):
        assert_complete(client, url, part, reports=None)  # the partials declared nothing
    # Concatenating again, in the right order, works.
    response = client.post(own_server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(urls), **declared})
    assert response.status_code == 201, response.text
    assert_complete(client, response.headers["location"], DATA, reports="sha256")


# --- declarations refused at creation ---------------------------------------------------------


@pytest.mark.parametrize(
    "headers, code",
    [
        ({"Upload-Metadata": metadata(checksum="sha256")}, "ERR_INVALID_DIGEST"),
        ({"Upload-Metadata": metadata(checksum=None)}, "ERR_INVALID_DIGEST"),
        ({"Upload-Metadata": metadata(checksum="sha256 " + "zz" * 32)}, "ERR_INVALID_DIGEST"),
        ({"Upload-Metadata": metadata(checksum="sha256 " + hashlib.md5(DATA).hexdigest())}, "ERR_INVALID_DIGEST"),
        ({"Upload-Metadata": metadata(checksum="crc32 deadbeef")}, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ({"Upload-Metadata": metadata(checksum="sha3-256 " + "00" * 32)}, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        ({"Repr-Digest": "sha-256"}, "ERR_INVALID_DIGEST"),
        ({"Repr-Digest": "sha-256=:nope:"}, "ERR_INVALID_DIGEST"),
        ({"Repr-Digest": f"sha-256=:{b64(hashlib.md5(DATA).digest())}:"}, "ERR_INVALID_DIGEST"),
        ({"Repr-Digest": "sha3-256=:AAAA:"}, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
        (
            {
                "Upload-Metadata": metadata(checksum=checksum_metadata("sha256", DATA)),
                "Repr-Digest": sha256_field(WRONG),
            },
            "ERR_INVALID_DIGEST",
        ),
    ],
    ids=[
        "no-digest",
        "key-without-value",
        "bad-hex",
        "wrong-length",
        "crc32",
        "sha3",
        "repr-bare-key",
        "repr-bad-base64",
        "repr-wrong-length",
        "repr-only-unknown",
        "forms-disagree",
    ],
)
@pytest.mark.parametrize("kind", ["regular", "with-body", "deferred", "final"])
def test_bad_declaration_is_refused_at_creation(
    own_server: TusServer, client: httpx.Client, headers: dict[str, str], code: str, kind: str
) -> None:
    request = {**TUS, **headers}
    body = b""
    if kind == "regular":
        request["Upload-Length"] = str(len(DATA))
    elif kind == "with-body":
        request |= {"Upload-Length": str(len(DATA)), "Content-Type": "application/offset+octet-stream"}
        body = DATA
    elif kind == "deferred":
        request["Upload-Defer-Length"] = "1"
    else:
        partials = _partials(client, own_server, [DATA])
        request["Upload-Concat"] = f"final;{partials[0]}"
    before = entries(own_server)
    response = client.post(own_server.url, content=body, headers=request)
    assert response.status_code == 400, response.text
    assert response.text.startswith(code)
    assert "location" not in response.headers
    assert entries(own_server) == before


# --- real clients ------------------------------------------------------------------------------


def test_tuspy_with_metadata_checksum(server: TusServer, client: httpx.Client) -> None:
    metadata_ = {"filename": "photo.jpg", "checksum": checksum_metadata("sha256", DATA)}
    with io.BytesIO(DATA) as stream:  # tuspy leaves a file_path's file open
        uploader = tus_client.TusClient(server.url).uploader(
            file_stream=stream, chunk_size=64 * 1024, metadata=metadata_
        )
        uploader.upload()
    assert uploader.url is not None
    assert_complete(client, uploader.url, DATA, reports="sha256")


def test_tuspy_with_wrong_metadata_checksum_fails_then_resumes(server: TusServer, client: httpx.Client) -> None:
    metadata_ = {"checksum": checksum_metadata("sha256", DATA)}  # the checksum of the real file
    with io.BytesIO(WRONG) as corrupted:
        uploader = tus_client.TusClient(server.url).uploader(
            file_stream=corrupted, chunk_size=64 * 1024, metadata=metadata_
        )
        with pytest.raises(TusUploadFailed) as caught:
            uploader.upload()
    assert caught.value.status_code == 460
    url = uploader.url
    assert url is not None
    assert_reset(client, url, len(DATA))
    # tuspy resuming from the stored URL with the right file starts at offset 0 and succeeds.
    with io.BytesIO(DATA) as good:
        again = tus_client.TusClient(server.url).uploader(file_stream=good, url=url, chunk_size=64 * 1024)
        assert again.offset == 0
        again.upload()
    assert_complete(client, url, DATA, reports="sha256")


def test_tuspy_with_unsupported_checksum_is_refused(server: TusServer) -> None:
    with io.BytesIO(b"abc") as stream:
        uploader = tus_client.TusClient(server.url).uploader(
            file_stream=stream, metadata={"checksum": "crc32 352441c2"}
        )
        with pytest.raises(TusCommunicationError) as caught:
            uploader.upload()
    assert caught.value.status_code == 400


def test_raw_httpx_client_repr_digest_round_trip(server: TusServer) -> None:
    # Nothing but httpx and the wire protocol: create, PATCH twice, HEAD, GET.
    with httpx.Client(timeout=10.0) as http:
        created = http.post(
            server.url,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(DATA)),
                "Repr-Digest": f"sha-512=:{b64(hashlib.sha512(DATA).digest())}:",
            },
        )
        assert created.status_code == 201
        url = created.headers["location"]
        offset = 0
        for chunk in (DATA[:150_000], DATA[150_000:]):
            response = http.patch(
                url,
                content=chunk,
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            assert response.status_code == 204
            offset = int(response.headers["upload-offset"])
        response = http.head(url, headers={"Tus-Resumable": "1.0.0", "Want-Repr-Digest": "sha-512=5"})
        assert response.headers["repr-digest"] == f"sha-512=:{b64(hashlib.sha512(DATA).digest())}:"
        downloaded = http.get(url)
        assert downloaded.content == DATA
        assert downloaded.headers["repr-digest"] == f"sha-512=:{b64(hashlib.sha512(DATA).digest())}:"  # the declared
        downloaded = http.get(url, headers={"Want-Repr-Digest": "sha-256=10"})
        assert downloaded.content == DATA
        assert downloaded.headers["repr-digest"] == sha256_field(DATA)


@pytest.mark.parametrize("wrong", [False, True], ids=["right", "wrong"])
def test_uppy_style_metadata(server: TusServer, client: httpx.Client, wrong: bool) -> None:
    # Uppy's tus plugin sends its meta fields (name, type, relativePath, ...) next to tusd's
    # filename/filetype; tus-js-client encodes an empty value as `key ` (empty base64), and other
    # clients send bare keys. Any of them may carry a `checksum` the app computed.
    header = ",".join(
        [
            f"relativePath {b64(b'null')}",
            f"name {b64('photo ünïcode.png'.encode())}",
            f"type {b64(b'image/png')}",
            f"filetype {b64(b'image/png')}",
            f"filename {b64('photo ünïcode.png'.encode())}",
            "caption ",  # tus-js-client's empty value
            "flag",  # a key without value
            f"checksum {b64(checksum_metadata('sha256', DATA).encode())}",
        ]
    )
    url = create(client, server, len(DATA), **{"Upload-Metadata": header})
    response = upload_in_chunks(client, url, WRONG if wrong else DATA, chunks=4)
    if wrong:
        assert_mismatch(response)
        assert_reset(client, url, len(DATA))
        return
    assert response.status_code == 204
    assert_complete(client, url, DATA, reports="sha256")
    assert stored_info(server, url)["MetaData"]["caption"] == ""
    assert stored_info(server, url)["MetaData"]["flag"] == ""


# --- Want-Repr-Digest --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "want, algorithm",
    [
        ("sha-512=10, sha-256=1", "sha512"),
        ("sha-256=1, sha-512=10", "sha512"),
        ("md5=3", "md5"),
        ("sha=1", "sha1"),
        ("sha-512=0, sha-256=1", "sha256"),
        ("sha3-256=10", None),  # nothing we support, and nothing recorded: no digest
        ("unixsum=10, id-sha-512=5", None),
        ("garbage;;", None),
    ],
)
@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_want_repr_digest(
    server: TusServer, client: httpx.Client, want: str, algorithm: str | None, method: str
) -> None:
    url = create(client, server, len(DATA))
    assert patch(client, url, 0, DATA).status_code == 204
    response = client.request(method, url, headers={**TUS, "Want-Repr-Digest": want})
    assert response.status_code == 200
    if algorithm is None:
        assert "repr-digest" not in response.headers
        assert "Digests" not in stored_info(server, url)  # nothing computed either
        return
    assert response.headers["repr-digest"] == repr_digest(algorithm, DATA)
    # Computed on demand once, then recorded (and so reported unasked).
    assert stored_info(server, url)["Digests"] == {algorithm: b64(hashlib.new(algorithm, DATA).digest())}
    assert head(client, url).headers["repr-digest"] == repr_digest(algorithm, DATA)


@pytest.mark.parametrize("want", ["sha3-256=10", "unixsum=10, id-sha-512=5", "garbage;;"])
@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_want_repr_digest_unsupported_reports_the_declared_digest(
    server: TusServer, client: httpx.Client, want: str, method: str
) -> None:
    url = create(client, server, len(DATA), **{"Upload-Metadata": metadata(checksum=checksum_metadata("md5", DATA))})
    assert patch(client, url, 0, DATA).status_code == 204
    response = client.request(method, url, headers={**TUS, "Want-Repr-Digest": want})
    assert response.status_code == 200
    assert response.headers["repr-digest"] == repr_digest("md5", DATA)
    assert stored_info(server, url)["Digests"] == {"md5": b64(hashlib.md5(DATA).digest())}


def test_sha256_once_recorded_is_reported_before_the_declared_digest(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, len(DATA), **{"Repr-Digest": repr_digest("sha512", DATA)})
    assert patch(client, url, 0, DATA).status_code == 204
    assert head(client, url).headers["repr-digest"] == repr_digest("sha512", DATA)
    assert client.head(url, headers=WANT_SHA256).headers["repr-digest"] == sha256_field(DATA)
    assert head(client, url).headers["repr-digest"] == sha256_field(DATA)
    wanted = client.head(url, headers={**TUS, "Want-Repr-Digest": "sha-512=10"})
    assert wanted.headers["repr-digest"] == repr_digest("sha512", DATA)  # still there when asked for


# --- lost hashing state: restart mid-upload ----------------------------------------------------


def _restart(make_server: Callable[..., TusServer], old: TusServer) -> tuple[TusServer, int]:
    """SIGTERM `old` and start a new server on its directory; returns it and where its log starts."""
    old.stop(signal.SIGTERM)
    assert old.process.returncode is not None
    log_start = old.log_path.stat().st_size  # both servers append to the same log file
    return make_server(upload_dir=old.upload_dir), log_start


@pytest.mark.parametrize("wrong", [False, True], ids=["right", "wrong"])
def test_restart_mid_upload_rereads_and_verifies(
    make_server: Callable[..., TusServer], client: httpx.Client, wrong: bool
) -> None:
    first = make_server()
    url = create(client, first, len(DATA), **{"Upload-Metadata": metadata(checksum=checksum_metadata("sha256", DATA))})
    sent = WRONG if wrong else DATA
    half = len(DATA) // 2
    assert patch(client, url, 0, sent[:half]).status_code == 204
    second, log_start = _restart(make_server, first)
    url = url.replace(first.origin, second.origin)
    assert head(client, url).headers["upload-offset"] == str(half)
    response = patch(client, url, half, sent[half:])
    new_log = second.log()[log_start:]
    assert f"re-reading upload {upload_id(url)}" in new_log
    if wrong:
        assert_mismatch(response)
        assert_reset(client, url, len(DATA))
        return
    assert response.status_code == 204, response.text
    assert_complete(client, url, DATA, reports="sha256")


def test_restart_before_any_byte_needs_no_reread(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    first = make_server()
    url = create(client, first, len(DATA), **{"Repr-Digest": sha256_field(DATA)})
    second, log_start = _restart(make_server, first)
    url = url.replace(first.origin, second.origin)
    assert upload_in_chunks(client, url, DATA).status_code == 204
    assert_complete(client, url, DATA, reports="sha256")
    assert "re-reading upload" not in second.log()[log_start:]


@pytest.mark.parametrize("per_request_checksum", [False, True], ids=["plain", "upload-checksum"])
def test_upload_without_restart_is_hashed_as_it_arrives(
    server: TusServer, client: httpx.Client, per_request_checksum: bool
) -> None:
    url = create(client, server, len(DATA), **{"Upload-Metadata": metadata(checksum=checksum_metadata("sha512", DATA))})
    size = len(DATA) // 4
    for offset in range(0, len(DATA), size):
        chunk = DATA[offset : offset + size]
        extra = {"Upload-Checksum": f"sha1 {b64(hashlib.sha1(chunk).digest())}"} if per_request_checksum else {}
        assert patch(client, url, offset, chunk, **extra).status_code == 204
    assert_complete(client, url, DATA, reports="sha512")
    assert f"re-reading upload {upload_id(url)}" not in server.log()


def test_rejected_per_request_checksum_does_not_poison_the_running_hash(
    server: TusServer, client: httpx.Client
) -> None:
    # A PATCH refused with 460 (Upload-Checksum) stores nothing; its bytes must not count
    # toward the whole-file digest either.
    url = create(client, server, len(DATA), **{"Repr-Digest": sha256_field(DATA)})
    half = len(DATA) // 2
    claimed = f"sha1 {b64(hashlib.sha1(DATA[:half]).digest())}"
    bad = patch(client, url, 0, WRONG[:half] + b"!", **{"Upload-Checksum": claimed})
    assert bad.status_code == 460
    assert patch(client, url, 0, DATA[:half]).status_code == 204
    assert patch(client, url, half, DATA[half:]).status_code == 204
    assert_complete(client, url, DATA, reports="sha256")
    assert f"re-reading upload {upload_id(url)}" not in server.log()


# --- complete on disk but never verified (a crash, or a directory written by tusd) -----------


def _write_unverified(upload_dir: Path, upload_id_: str, data: bytes, declared: dict[str, bytes]) -> None:
    """A finished upload as tusd (or a crash before the info rewrite) leaves it: no Digests, no Finished."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    (upload_dir / upload_id_).write_bytes(data)
    document = {
        "ID": upload_id_,
        "Size": len(data),
        "SizeIsDeferred": False,
        "Offset": len(data),
        "MetaData": {"filename": "old.bin"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": {"Type": "filestore", "Path": str(upload_dir / upload_id_)},
    }
    if declared:
        document["DeclaredDigests"] = {name: b64(value) for name, value in declared.items()}
    (upload_dir / f"{upload_id_}.info").write_text(json.dumps(document))


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_unverified_complete_upload_is_verified_when_loaded(
    make_server: Callable[..., TusServer], client: httpx.Client, tmp_path: Path, method: str
) -> None:
    upload_dir = tmp_path / "tusd-dir"
    _write_unverified(upload_dir, "a" * 32, DATA, {})
    _write_unverified(upload_dir, "b" * 32, DATA, {"sha256": hashlib.sha256(DATA).digest()})
    server = make_server(upload_dir=upload_dir)
    # Declared nothing: finished as it is, nothing to re-read, no digest unasked.
    response = client.request(method, server.url + "a" * 32, headers=TUS)
    assert response.status_code == 200
    assert "repr-digest" not in response.headers
    assert response.content == (DATA if method == "GET" else b"")
    assert f"re-reading upload {'a' * 32}" not in server.log()
    recorded = json.loads((upload_dir / f"{'a' * 32}.info").read_text())
    assert recorded["Finished"] is True and "Digests" not in recorded
    assert_complete(client, server.url + "a" * 32, DATA, reports=None)
    # Declared sha-256: re-read and verified on first load.
    response = client.request(method, server.url + "b" * 32, headers=TUS)
    assert response.status_code == 200
    assert response.headers["repr-digest"] == sha256_field(DATA)
    assert response.content == (DATA if method == "GET" else b"")
    assert f"re-reading upload {'b' * 32}" in server.log()
    recorded = json.loads((upload_dir / f"{'b' * 32}.info").read_text())
    assert recorded["Finished"] is True and recorded["Digests"] == {"sha256": b64(hashlib.sha256(DATA).digest())}
    assert_complete(client, server.url + "b" * 32, DATA, reports="sha256")


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_unverified_complete_upload_with_wrong_declared_digest_never_looks_complete(
    make_server: Callable[..., TusServer], client: httpx.Client, tmp_path: Path, method: str
) -> None:
    upload_dir = tmp_path / "crashed-dir"
    _write_unverified(upload_dir, "c" * 32, WRONG, {"sha256": hashlib.sha256(DATA).digest()})
    server = make_server(upload_dir=upload_dir)
    url = server.url + "c" * 32
    response = client.request(method, url, headers=TUS)
    if method == "GET":
        assert response.status_code == 404  # reset: nothing finished to download
    assert_reset(client, url, len(DATA))
    assert patch(client, url, 0, DATA).status_code == 204
    assert_complete(client, url, DATA, reports="sha256")
