"""Termination (DELETE) and expiration (Upload-Expires, 410, the sweeper).

Checklist ids refer to /work/shared/research/spec-checklist.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server

OCTET = "application/offset+octet-stream"
T = TypeVar("T")


@pytest.fixture(scope="module")
def expiring_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    """Uploads expire 1 s after their last byte; the sweeper ran once at startup and then waits an hour,
    so expired uploads stay on disk (answering 410) for the whole module."""
    srv = start_server(
        tmp_path_factory.mktemp("expiring") / "uploads", "-expiration", "1s", "-expiration-sweep-interval", "1h"
    )
    yield srv
    srv.stop()


# --- helpers -------------------------------------------------------------------------------


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def files_of(server: TusServer, url: str) -> list[bool]:
    """Whether the data file and the .info file exist."""
    uid = upload_id(url)
    return [(server.upload_dir / uid).exists(), (server.upload_dir / (uid + ".info")).exists()]


def wait_for(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "upload-offset" not in response.headers
    if response.request.method != "HEAD":
        assert response.text.startswith(f"{code}: "), response.text


def expires_in(response: httpx.Response) -> float:
    return parsedate_to_datetime(response.headers["upload-expires"]).timestamp() - time.time()


def complete_upload(client: httpx.Client, server: TusServer, data: bytes = b"done") -> str:
    """An upload completed by its creation request (one request, so no expiry race)."""
    response = client.post(
        server.url, content=data, headers={**TUS, "Upload-Length": str(len(data)), "Content-Type": OCTET}
    )
    assert response.status_code == 201
    assert response.headers["upload-offset"] == str(len(data))
    return response.headers["location"]


# --- termination (T-TRM-*) -------------------------------------------------------------------


@pytest.mark.parametrize("state", ["new", "partly-written", "complete", "deferred"])
def test_delete_removes_upload(server: TusServer, client: httpx.Client, state: str) -> None:
    url = create(client, server, None if state == "deferred" else 5)
    if state == "partly-written":
        assert patch(client, url, 0, b"ab").status_code == 204
    elif state == "complete":
        assert patch(client, url, 0, b"abcde").status_code == 204
    assert files_of(server, url) == [True, True]

    response = client.delete(url, headers=TUS)
    assert response.status_code == 204  # T-TRM-2
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.content == b""
    assert files_of(server, url) == [False, False]
    assert not (server.upload_dir / (upload_id(url) + ".rollback")).exists()

    # T-TRM-3: every later request is 404.
    assert_error(head(client, url), 404, "ERR_UPLOAD_NOT_FOUND")
    assert_error(patch(client, url, 0, b"x"), 404, "ERR_UPLOAD_NOT_FOUND")
    assert_error(client.delete(url, headers=TUS), 404, "ERR_UPLOAD_NOT_FOUND")
    assert files_of(server, url) == [False, False]


def test_delete_leaves_other_uploads_alone(server: TusServer, client: httpx.Client) -> None:
    doomed = create(client, server, 5)
    kept = create(client, server, 5)
    assert patch(client, kept, 0, b"keep").status_code == 204
    assert client.delete(doomed, headers=TUS).status_code == 204
    assert head(client, kept).headers["upload-offset"] == "4"
    assert (server.upload_dir / upload_id(kept)).read_bytes() == b"keep"


def test_delete_with_content_length_zero(server: TusServer, client: httpx.Client) -> None:
    # The spec's example request.
    url = create(client, server, 5)
    response = client.delete(url, headers={**TUS, "Content-Length": "0"})
    assert response.status_code == 204
    assert head(client, url).status_code == 404


# --- Upload-Expires (T-EXP-2..5, T-EXP-7) --------------------------------------------------------


def test_patch_of_unfinished_upload_carries_upload_expires(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 10)
    response = patch(client, url, 0, b"abc")
    assert response.status_code == 204
    assert abs(expires_in(response) - 7 * 24 * 3600) < 120  # T-EXP-3, default 168h
    assert "upload-expires" in head(client, url).headers


def test_upload_expires_absent_once_complete(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 6)
    assert "upload-expires" in patch(client, url, 0, b"abc").headers
    response = patch(client, url, 3, b"def")
    assert response.status_code == 204
    assert "upload-expires" not in response.headers
    assert "upload-expires" not in head(client, url).headers


def test_expiration_flag_sets_lifetime(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    srv = make_server("-expiration", "1h")
    response = client.post(srv.url, headers={**TUS, "Upload-Length": "10"})
    assert abs(expires_in(response) - 3600) < 60
    url = response.headers["location"]
    assert abs(expires_in(patch(client, url, 0, b"abc")) - 3600) < 60
    assert abs(expires_in(head(client, url)) - 3600) < 60


def test_expiration_zero_disables_upload_expires(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    srv = make_server("-expiration", "0")
    response = client.post(srv.url, headers={**TUS, "Upload-Length": "10"})
    assert response.status_code == 201
    assert "upload-expires" not in response.headers
    url = response.headers["location"]
    assert "upload-expires" not in patch(client, url, 0, b"abc").headers
    assert "upload-expires" not in head(client, url).headers


# --- expired uploads (T-EXP-6) ---------------------------------------------------------------------


def _expired(client: httpx.Client, url: str) -> bool:
    status = head(client, url).status_code
    assert status in (200, 410)
    return status == 410


def test_expired_upload_answers_410(expiring_server: TusServer, client: httpx.Client) -> None:
    srv = expiring_server
    response = client.post(srv.url, content=b"ab", headers={**TUS, "Upload-Length": "10", "Content-Type": OCTET})
    assert response.status_code == 201
    assert "upload-expires" in response.headers  # T-EXP-4
    url = response.headers["location"]
    wait_for(lambda: _expired(client, url))

    assert_error(head(client, url), 410, "ERR_UPLOAD_EXPIRED")
    assert_error(patch(client, url, 2, b"cd"), 410, "ERR_UPLOAD_EXPIRED")
    assert_error(client.delete(url, headers=TUS), 410, "ERR_UPLOAD_EXPIRED")
    # Nothing was written or removed: only the sweeper deletes expired uploads.
    assert (srv.upload_dir / upload_id(url)).read_bytes() == b"ab"
    assert files_of(srv, url) == [True, True]


def test_expired_deferred_upload_answers_410(expiring_server: TusServer, client: httpx.Client) -> None:
    url = create(client, expiring_server, None)
    wait_for(lambda: _expired(client, url))
    assert_error(patch(client, url, 0, b"", **{"Upload-Length": "0"}), 410, "ERR_UPLOAD_EXPIRED")


def test_expiration_slides_with_each_stored_byte(expiring_server: TusServer, client: httpx.Client) -> None:
    # T-EXP-5 / wire policy: the lifetime counts from the last stored byte.
    url = create(client, expiring_server, None)
    start = time.monotonic()
    offset = 0
    while time.monotonic() - start < 1.7:  # well past the 1 s lifetime of the creation
        response = patch(client, url, offset, b"x")
        assert response.status_code == 204, response.text
        offset += 1
        time.sleep(0.1)  # pacing only; each PATCH lands long before the previous one's expiry
    assert head(client, url).status_code == 200
    wait_for(lambda: _expired(client, url))


def test_completed_upload_never_expires(expiring_server: TusServer, client: httpx.Client) -> None:
    srv = expiring_server
    complete = complete_upload(client, srv)
    empty = create(client, srv, 0)
    unfinished = create(client, srv, 10)  # created last, so it expires after the others would have
    wait_for(lambda: _expired(client, unfinished))

    for url in (complete, empty):
        response = head(client, url)
        assert response.status_code == 200
        assert "upload-expires" not in response.headers
        assert response.headers["upload-offset"] == response.headers["upload-length"]
        assert patch(client, url, int(response.headers["upload-offset"]), b"").status_code == 204
    assert (srv.upload_dir / upload_id(complete)).read_bytes() == b"done"
    assert client.delete(complete, headers=TUS).status_code == 204


def test_sweeper_removes_expired_uploads(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    srv = make_server("-expiration", "1s", "-expiration-sweep-interval", "200ms")
    complete = complete_upload(client, srv)
    response = client.post(srv.url, content=b"abc", headers={**TUS, "Upload-Length": "10", "Content-Type": OCTET})
    assert response.status_code == 201
    expiring = response.headers["location"]

    wait_for(lambda: files_of(srv, expiring) == [False, False])
    assert_error(head(client, expiring), 404, "ERR_UPLOAD_NOT_FOUND")
    assert_error(patch(client, expiring, 3, b"d"), 404, "ERR_UPLOAD_NOT_FOUND")

    # The completed upload survives the sweeps.
    assert files_of(srv, complete) == [True, True]
    response = head(client, complete)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "4"


def test_sweeper_survives_corrupt_neighbours(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    # One unreadable entry in the upload dir must not stop expiration of every other upload.
    # Several poisoned entries, so that (whatever the directory order) the real upload is very
    # unlikely to be listed before all of them.
    srv = make_server("-expiration", "1s", "-expiration-sweep-interval", "200ms")
    for n in range(16):
        name = f"poison{n:02d}"
        (srv.upload_dir / name).write_bytes(b"ab")
        (srv.upload_dir / (name + ".info")).write_text(json.dumps({"ID": name, "Size": 10}))
        (srv.upload_dir / (name + ".rollback")).write_text("not a number")
    url = create(client, srv, 10)

    wait_for(lambda: files_of(srv, url) == [False, False], timeout=8.0)
    assert head(client, url).status_code == 404
    # The corrupt upload itself: gone or expired, but never a 500.
    assert head(client, srv.url + "poison00").status_code in (404, 410)
