"""Upload locks: a request for an upload whose PATCH is stuck (client alive, body silent) does
not wait for it: the stuck request is interrupted (400 ERR_UPLOAD_INTERRUPTED, its bytes kept)
and the newcomer answers promptly, within one process and across processes sharing a directory.
A holder that cannot let go makes waiters fail with 500 ERR_LOCK_TIMEOUT after
-acquire-lock-timeout; concatenation waits without interrupting; two PATCHes never interleave."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch
from rawhttp import RawRequest, RawResponse

from tusd_py.body import BLOCK_SIZE

TIMEOUT = 10.0
PROMPT = 3.0  # a newcomer's answer, and the stuck request's 400, come within this
MiB = 1 << 20
SIZE = 2 * BLOCK_SIZE
DATA = random.Random(41).randbytes(SIZE)
STUCK_SENT = BLOCK_SIZE + 1000  # what a stuck PATCH sends: one block reaches the disk, the rest waits


# --- helpers ---------------------------------------------------------------------------------


def patch_headers(offset: int, **extra: str) -> dict[str, str]:
    return {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **extra}


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def on(server: TusServer, url: str) -> str:
    """The same upload's URL on another server (processes sharing one upload directory)."""
    return server.url + upload_id(url)


def data_file(server: TusServer, url: str) -> Path:
    return server.upload_dir / upload_id(url)


def leftovers(server: TusServer, url: str) -> list[str]:
    """Files of this upload besides its data, .info and lock file (.stop, .rollback, temp files).
    The lock file lives as long as the upload (lockers/file.py)."""
    uid = upload_id(url)
    kept = (uid, uid + ".info", uid + ".lock")
    return sorted(p.name for p in server.upload_dir.iterdir() if p.name.startswith(uid) and p.name not in kept)


def wait_for_file_size(path: Path, at_least: int) -> int:
    """Poll (bounded) until the data file holds at least `at_least` bytes; returns its size."""
    deadline = time.monotonic() + TIMEOUT
    while (size := path.stat().st_size) < at_least and time.monotonic() < deadline:
        time.sleep(0.005)
    return size


def start_stuck_patch(server: TusServer, url: str, offset: int, sent: int) -> RawRequest:
    """A PATCH that sends `sent` bytes of a longer body, then nothing (the client stays).

    Returns once a block is on disk: the request holds the upload's lock."""
    stuck = RawRequest(server, "PATCH", url, patch_headers(offset, **{"Content-Length": str(SIZE - offset)}))
    stuck.send(DATA[offset : offset + sent])
    assert wait_for_file_size(data_file(server, url), offset + 1) > offset
    return stuck


def assert_interrupted(response: RawResponse) -> None:
    assert response.status == 400, response
    assert response.body.startswith(b"ERR_UPLOAD_INTERRUPTED"), response.body
    assert response.headers["tus-resumable"] == "1.0.0"


def assert_resumes_byte_identical(client: httpx.Client, url: str, path: Path) -> None:
    offset = int(head(client, url).headers["upload-offset"])
    response = patch(client, url, offset, DATA[offset:])
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(SIZE)
    assert path.read_bytes() == DATA


@pytest.fixture(params=["one-process", "two-processes"])
def servers(request: pytest.FixtureRequest) -> tuple[TusServer, TusServer]:
    """(A, B): where the stuck request runs, and where the newcomer comes in."""
    if request.param == "one-process":
        shared: TusServer = request.getfixturevalue("server")
        return shared, shared
    make_server: Callable[..., TusServer] = request.getfixturevalue("make_server")
    a = make_server()
    return a, make_server(upload_dir=a.upload_dir)


# --- lock release: a stuck PATCH gives way ------------------------------------------------------


def test_head_interrupts_stuck_patch(servers: tuple[TusServer, TusServer], client: httpx.Client) -> None:
    # T-CORE-23 / tusd lock release: HEAD is not blocked by a PATCH whose body stalls; it
    # answers promptly with the offset on disk, the stuck PATCH gets 400 and keeps its bytes.
    a, b = servers
    url = create(client, a, SIZE)
    path = data_file(a, url)
    with start_stuck_patch(a, url, 0, STUCK_SENT) as stuck:
        on_disk = path.stat().st_size
        started = time.monotonic()
        response = head(client, on(b, url))
        assert time.monotonic() - started < PROMPT
        assert response.status_code == 200
        offset = int(response.headers["upload-offset"])
        assert offset == path.stat().st_size
        assert on_disk <= offset <= STUCK_SENT
        assert_interrupted(stuck.read_response(started + PROMPT))
    assert path.read_bytes() == DATA[:offset]
    assert leftovers(a, url) == []
    assert_resumes_byte_identical(client, on(b, url), path)


def test_patch_retried_from_the_stuck_start_offset_interrupts_and_gets_409(
    servers: tuple[TusServer, TusServer], client: httpx.Client
) -> None:
    # A client that gave up on a stalled PATCH retries it from the offset it knew: the stuck
    # request is interrupted (its bytes kept), the retry learns the new offset at once (409 with
    # Upload-Offset, T-CORE-16) and continues from there.
    a, b = servers
    url = create(client, a, SIZE)
    path = data_file(a, url)
    start = 1000
    assert patch(client, url, 0, DATA[:start]).status_code == 204
    with start_stuck_patch(a, url, start, STUCK_SENT) as stuck:
        on_disk = path.stat().st_size
        started = time.monotonic()
        response = patch(client, on(b, url), start, DATA[start:])
        assert time.monotonic() - started < PROMPT
        assert response.status_code == 409, response.text
        offset = int(response.headers["upload-offset"])
        assert offset == path.stat().st_size
        assert on_disk <= offset <= start + STUCK_SENT
        assert_interrupted(stuck.read_response(started + PROMPT))
    assert path.read_bytes() == DATA[:offset]
    assert_resumes_byte_identical(client, on(b, url), path)
    assert leftovers(a, url) == []


def test_patch_at_the_stuck_requests_offset_interrupts_and_succeeds(
    servers: tuple[TusServer, TusServer], client: httpx.Client
) -> None:
    # The newcomer continues where the stuck request got to and completes the upload promptly.
    # The stuck request sends exactly one block: the server writes a block only once it holds
    # BLOCK_SIZE bytes, so when the data file grows every sent byte has arrived, and the
    # stored offset is BLOCK_SIZE exactly.
    a, b = servers
    url = create(client, a, SIZE)
    path = data_file(a, url)
    with start_stuck_patch(a, url, 0, BLOCK_SIZE) as stuck:
        started = time.monotonic()
        response = patch(client, on(b, url), BLOCK_SIZE, DATA[BLOCK_SIZE:])
        assert time.monotonic() - started < PROMPT
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(SIZE)
        assert_interrupted(stuck.read_response(started + PROMPT))
    assert path.read_bytes() == DATA
    assert leftovers(a, url) == []


def test_expiration_sweep_does_not_block_requests_for_an_upload_busy_elsewhere(
    make_server: Callable[..., TusServer], client: httpx.Client
) -> None:
    # While process A holds an upload's lock, process B's expiration sweeper (every 10 ms here)
    # waits for that lock without interrupting. B's own requests for the upload must still get
    # their release request to A and answer promptly, not queue behind the sweeper until the
    # acquire timeout. (Whether the sweeper gets there first is a race: several rounds.)
    a = make_server()
    b = make_server("-expiration-sweep-interval", "10ms", "-acquire-lock-timeout", "5s", upload_dir=a.upload_dir)
    assert client.options(b.url).status_code == 200  # B is up: its sweeper runs
    for _ in range(5):
        url = create(client, a, SIZE)
        path = data_file(a, url)
        with start_stuck_patch(a, url, 0, STUCK_SENT) as stuck:
            started = time.monotonic()
            response = head(client, on(b, url))
            assert time.monotonic() - started < PROMPT
            assert response.status_code == 200
            assert int(response.headers["upload-offset"]) == path.stat().st_size
            assert_interrupted(stuck.read_response(started + PROMPT))
        assert_resumes_byte_identical(client, on(b, url), path)


# --- lock timeout -----------------------------------------------------------------------------


def test_frozen_holder_makes_waiters_time_out(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    # A holder that cannot hear the release request (its process is stopped) keeps the lock;
    # a waiter gives up after -acquire-lock-timeout with 500 ERR_LOCK_TIMEOUT (clients retry 5xx).
    a = make_server()
    b = make_server("-acquire-lock-timeout", "1s", upload_dir=a.upload_dir)
    url = create(client, a, SIZE)
    path = data_file(a, url)
    with start_stuck_patch(a, url, 0, STUCK_SENT) as stuck:
        a.process.send_signal(signal.SIGSTOP)
        try:
            for method in ("HEAD", "PATCH"):
                started = time.monotonic()
                if method == "HEAD":
                    response = head(client, on(b, url))
                else:
                    response = patch(client, on(b, url), 0, b"x")
                elapsed = time.monotonic() - started
                assert 0.9 <= elapsed < 2.5, (method, elapsed)
                assert response.status_code == 500, (method, response.text)
                if method == "PATCH":  # (HEAD answers have no body)
                    assert response.text.startswith("ERR_LOCK_TIMEOUT")
        finally:
            a.process.send_signal(signal.SIGCONT)
        # Once A runs again it hears the next release request and lets go.
        started = time.monotonic()
        response = head(client, on(b, url))
        assert time.monotonic() - started < PROMPT
        assert response.status_code == 200
        assert int(response.headers["upload-offset"]) == path.stat().st_size
        assert_interrupted(stuck.read_response(started + PROMPT))
    assert_resumes_byte_identical(client, on(b, url), path)
    assert leftovers(a, url) == []


def test_final_concatenation_waits_for_a_busy_partial_without_interrupting_it(
    make_server: Callable[..., TusServer], client: httpx.Client
) -> None:
    # Concatenation reads the partials under their locks but must not break a running upload:
    # it waits, and after -acquire-lock-timeout answers 500 ERR_LOCK_TIMEOUT; the PATCH goes on.
    server = make_server("-acquire-lock-timeout", "1s")
    first = create(client, server, 5, **{"Upload-Concat": "partial"})
    assert patch(client, first, 0, b"hello").status_code == 204
    second = create(client, server, SIZE, **{"Upload-Concat": "partial"})
    final_headers = {**TUS, "Upload-Concat": f"final;{urlsplit(first).path} {urlsplit(second).path}"}
    with start_stuck_patch(server, second, 0, STUCK_SENT) as stuck:
        started = time.monotonic()
        response = client.post(server.url, headers=final_headers)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 2.5, elapsed
        assert response.status_code == 500, response.text
        assert response.text.startswith("ERR_LOCK_TIMEOUT")
        # The stuck PATCH was not interrupted: it finishes its body and succeeds.
        stuck.send(DATA[STUCK_SENT:])
        finished = stuck.read_response(time.monotonic() + TIMEOUT)
        assert finished.status == 204, finished
        assert finished.headers["upload-offset"] == str(SIZE)
    response = client.post(server.url, headers=final_headers)
    assert response.status_code == 201, response.text
    final = response.headers["location"]
    assert head(client, final).headers["upload-offset"] == str(5 + SIZE)
    assert data_file(server, final).read_bytes() == b"hello" + DATA


# --- two PATCHes at once ---------------------------------------------------------------------


def test_simultaneous_patches_never_interleave_bytes(
    servers: tuple[TusServer, TusServer], client: httpx.Client
) -> None:
    # One request at a time per upload: two PATCHes at offset 0 with different bytes race
    # (headers and body pieces sent in a random order); whichever holds the lock is interrupted
    # by the other, which then finds the offset moved (409) unless nothing was stored yet. So
    # the file is always one request's bytes, never a mix.
    a, b = servers
    rng = random.Random(7)
    size = 4 * MiB
    bodies = {"A": b"A" * size, "B": b"B" * size}
    for _ in range(6):
        url = create(client, a, size)
        path = data_file(a, url)
        targets = {"A": (a, url), "B": (b, on(b, url))}
        requests: dict[str, RawRequest] = {}
        answers: dict[str, RawResponse] = {}
        try:
            positions = {"A": 0, "B": 0}
            sending = {"A", "B"}
            while sending:
                name = rng.choice(sorted(sending))
                if name not in requests:  # its first turn: the request line and headers
                    server, target = targets[name]
                    requests[name] = RawRequest(
                        server, "PATCH", target, patch_headers(0, **{"Content-Length": str(size)})
                    )
                    continue
                start = positions[name]
                end = min(size, start + rng.randrange(1, 512 * 1024))
                try:
                    requests[name].send(bodies[name][start:end])
                except OSError:  # the server answered and closed: nothing more to send
                    sending.discard(name)
                    continue
                positions[name] = end
                if end == size:
                    sending.discard(name)
            for name, request in requests.items():
                try:
                    answers[name] = request.read_response(time.monotonic() + TIMEOUT)
                except OSError:
                    pass  # a reset after the answer can eat it; the file is what matters
        finally:
            for request in requests.values():
                request.sock.close()

        offset = int(head(client, url).headers["upload-offset"])
        stored = path.read_bytes()
        assert offset == len(stored)
        assert stored in (b"A" * offset, b"B" * offset), f"interleaved bytes: {stored[:1]!r}..{stored[-1:]!r}"
        for name, answer in answers.items():
            assert answer.status in (204, 400, 409), (name, answer)
            if answer.status == 204:
                assert stored == bodies[name]
            elif answer.status == 400:
                assert answer.body.startswith(b"ERR_UPLOAD_INTERRUPTED"), answer.body
        assert leftovers(a, url) == []
