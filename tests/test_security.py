"""Security review follow-ups (spec_notes/security.md): defences the review relies on that no
other test pinned, and the holes it found, asserted as they should behave.

- `.info` `Storage.Path` / `InfoPath` are never followed: the data file is always
  `<upload-dir>/<id>` (a planted `.info` pointing elsewhere reads, writes and deletes nothing there).
- Concatenation URLs cannot name anything outside the upload directory.
- Requests of the IETF draft (`Upload-Draft-Interop-Version`) for ids with no upload leave no
  file behind, and removing an upload removes its lock file, as tus requests do (no unbounded
  growth of the directory from anonymous requests).
- A header larger than `-max-header-size` is refused while it is still arriving: the parser must
  not buffer it until the header deadline (a client could make one connection hold hundreds of MiB).
- `tusd_requests_total` labels come from a fixed set of methods: `X-HTTP-Method-Override` with an
  arbitrary value must not create a new time series per request.
- With `-workers N` the workers write the request log (the audit trail) as one process does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server

KiB = 1 << 10
MiB = 1 << 20
OCTET = "application/offset+octet-stream"
IETF = {"Upload-Draft-Interop-Version": "8"}
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    """A server of our own: these tests plant files next to and inside its directory."""
    server = start_server(tmp_path_factory.mktemp("security") / "srv" / "uploads")
    yield server
    server.stop()


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".log")
    }


def plant(server: TusServer, upload_id: str, data: bytes, size: int, outside: Path) -> None:
    """An upload whose .info claims its bytes live at `outside` (tusd's Storage fields)."""
    (server.upload_dir / upload_id).write_bytes(data)
    info = {
        "ID": upload_id,
        "Size": size,
        "SizeIsDeferred": False,
        "Offset": len(data),
        "MetaData": {"filename": "planted.bin"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": {"Type": "filestore", "Path": str(outside), "InfoPath": str(outside) + ".info"},
    }
    (server.upload_dir / f"{upload_id}.info").write_text(json.dumps(info))


# --- .info Storage.Path -----------------------------------------------------------------------------


def test_info_storage_path_is_never_followed(isolated: TusServer, client: httpx.Client) -> None:
    outside = isolated.upload_dir.parent / "outside-secret.bin"
    outside.write_bytes(b"OUTSIDE SECRET")
    (isolated.upload_dir.parent / "outside-secret.bin.info").write_text("{}")

    # A complete upload: HEAD and GET serve <upload-dir>/<id>, not Storage.Path. The sha-256
    # asked for is computed now, from the bytes the server reads.
    plant(isolated, "plantedComplete", b"inside", 6, outside)
    response = client.head(isolated.url + "plantedComplete", headers={**TUS, "Want-Repr-Digest": "sha-256=10"})
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "6"
    sha256 = base64.b64encode(hashlib.sha256(b"inside").digest()).decode()
    assert response.headers["repr-digest"] == f"sha-256=:{sha256}:"
    download = client.get(isolated.url + "plantedComplete")
    assert download.status_code == 200 and download.content == b"inside"

    # An unfinished one: PATCH writes inside, DELETE removes inside; the outside file never changes.
    plant(isolated, "plantedOpen", b"", 10, outside)
    response = patch(client, isolated.url + "plantedOpen", 0, b"12345")
    assert response.status_code == 204, response.text
    assert (isolated.upload_dir / "plantedOpen").read_bytes() == b"12345"
    for upload_id in ("plantedOpen", "plantedComplete"):
        assert client.delete(isolated.url + upload_id, headers=TUS).status_code == 204
        assert not (isolated.upload_dir / upload_id).exists()
    assert outside.read_bytes() == b"OUTSIDE SECRET"
    assert (isolated.upload_dir.parent / "outside-secret.bin.info").read_text() == "{}"


# --- concatenation URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "partials",
    [
        "/files/..%2F..%2Foutside",
        "/files/%2e%2e/outside",
        "/files/..%2Foutside",
        "../outside",
        "http://elsewhere.example/files/..%2Foutside",
        "/files/outside%00",
        "/files/partial.info",
        "/files/" + "a" * 129,
    ],
)
def test_concatenation_urls_cannot_step_outside(isolated: TusServer, client: httpx.Client, partials: str) -> None:
    # A trap a traversing server would take for a finished partial upload.
    trap_dir = isolated.upload_dir.parent
    (trap_dir / "outside").write_bytes(b"abc")
    (trap_dir / "outside.info").write_text(
        json.dumps({"ID": "outside", "Size": 3, "Offset": 3, "IsPartial": True, "MetaData": {}})
    )
    before = tree(trap_dir)
    response = client.post(isolated.url, headers={**TUS, "Upload-Concat": f"final;{partials}"})
    assert response.status_code in (400, 404), response.text
    assert "location" not in response.headers
    assert tree(trap_dir) == before


# --- IETF draft requests leave nothing behind --------------------------------------------------------


def ietf_request(client: httpx.Client, method: str, url: str) -> httpx.Response:
    if method == "PATCH":
        headers = {**IETF, "Content-Type": "application/partial-upload", "Upload-Offset": "0"}
        return client.patch(url, headers={**headers, "Upload-Complete": "?0"}, content=b"abc")
    return client.request(method, url, headers=IETF)


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
def test_ietf_requests_for_unknown_ids_create_no_files(isolated: TusServer, client: httpx.Client, method: str) -> None:
    before = tree(isolated.upload_dir)
    for n in range(3):
        response = ietf_request(client, method, isolated.url + f"{n:032x}")
        assert response.status_code == 404, response.text
    assert tree(isolated.upload_dir) == before  # no <id>.lock (one per anonymous request otherwise)


@pytest.mark.parametrize("protocol", ["tus", "ietf"])
def test_deleted_upload_leaves_no_lock_file(isolated: TusServer, client: httpx.Client, protocol: str) -> None:
    url = create(client, isolated, 5)
    upload_id = url.rsplit("/", 1)[1]
    assert head(client, url).status_code == 200  # takes the lock: <id>.lock exists now
    headers = TUS if protocol == "tus" else IETF
    assert client.delete(url, headers=headers).status_code == 204
    assert sorted(p.name for p in isolated.upload_dir.glob(f"{upload_id}*")) == []


# --- headers bounded while they arrive ---------------------------------------------------------------


def test_oversized_header_is_refused_while_it_arrives(server: TusServer) -> None:
    # -max-header-size (64 KiB by default): 1 MiB of one header, never finished.
    answer: bytes | None
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"HEAD /files/x HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nX-Flood: ")
        try:
            for _ in range(16):
                sock.sendall(b"a" * 64 * KiB)
        except OSError:
            pass  # the server stopped reading and closed: what we want
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = None  # still buffering, waiting for the rest (until the header deadline)
        except OSError:
            answer = b""  # reset: refused
    assert answer is not None, "the server kept buffering a 1 MiB header instead of refusing it"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]


# --- metrics labels ----------------------------------------------------------------------------------


def test_method_override_cannot_create_metric_series(server: TusServer, client: httpx.Client) -> None:
    # X-HTTP-Method-Override (T-CORE-8) takes any value; tusd counts only the methods it knows.
    for n in range(5):
        override = {"X-HTTP-Method-Override": f"BOGUS{n}x{time.monotonic_ns()}"}
        assert client.post(server.url, headers={**TUS, **override}).status_code == 405
    metrics = client.get(server.origin + "/metrics").text
    labels = {line.split('"')[1] for line in metrics.splitlines() if line.startswith("tusd_requests_total{")}
    assert labels <= {"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT", "OTHER"}, labels


# --- workers keep the audit trail ----------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_workers_write_request_logs(
    make_server: Callable[..., TusServer], client: httpx.Client, log_format: str
) -> None:
    server = make_server("-workers", "2", "-log-format", log_format)
    assert client.post(server.url, headers={**TUS, "Upload-Length": "1"}).status_code == 201
    deadline = time.monotonic() + TIMEOUT
    while "RequestCompleted" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll: the worker writes its line after the response
    assert "RequestCompleted" in server.log(), server.log()[-2000:]
