"""Graceful shutdown: SIGTERM while a PATCH body is still streaming in.

Like tusd, the server does not wait for a slow client: the running body is
stopped at once with 503 ERR_SERVER_SHUTDOWN, the bytes that arrived are kept,
no new connection is served, and the process exits within -shutdown-timeout.
"""

from __future__ import annotations

import random
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head
from worker_procs import worker_pids

KiB = 1 << 10
MiB = 1 << 20
TIMEOUT = 10.0
CHUNK = 4 * KiB
CHUNK_INTERVAL = 0.05  # the client sends a chunk every 50 ms


def flock_holders(lock_file: Path) -> set[int]:
    """Pids holding a flock on `lock_file` (from /proc/locks)."""
    try:
        inode = lock_file.stat().st_ino
    except FileNotFoundError:
        return set()
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and "->" not in fields:
            if int(fields[5].split(":")[2]) == inode:
                holders.add(int(fields[4]))
    return holders


class SlowPatch:
    """A PATCH whose body trickles in: CHUNK bytes every CHUNK_INTERVAL, from a thread,
    until the server answers (or stops listening)."""

    def __init__(self, server: TusServer, url: str, data: bytes) -> None:
        self.data = data
        self.sent = 0
        self._stop = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        lines = [
            f"PATCH {urlsplit(url).path} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            *(f"{k}: {v}" for k, v in TUS.items()),
            "Upload-Offset: 0",
            "Content-Type: application/offset+octet-stream",
            f"Content-Length: {len(data)}",
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while self.sent < len(self.data) and not self._stop.is_set():
            try:
                self.sock.sendall(self.data[self.sent : self.sent + CHUNK])
            except OSError:  # the server answered and closed: stop sending
                return
            self.sent += CHUNK
            self._stop.wait(CHUNK_INTERVAL)

    def wait_sent(self, at_least: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.sent < at_least and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.sent >= at_least

    def read_response(self, timeout: float) -> tuple[int, bytes]:
        """Status and body of the answer (Content-Length framed)."""
        self.sock.settimeout(timeout)
        buffer = b""
        try:
            while b"\r\n\r\n" not in buffer:
                data = self.sock.recv(65536)
                assert data, "connection closed without an answer"
                buffer += data
            head_bytes, body = buffer.split(b"\r\n\r\n", 1)
            lines = head_bytes.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            while len(body) < int(headers.get("content-length", "0")):
                data = self.sock.recv(65536)
                assert data, "connection closed in the middle of the answer"
                body += data
        finally:
            self._stop.set()
        return int(lines[0].split(" ")[1]), body

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT)
        self.sock.close()


def served(server: TusServer) -> bool:
    """Does a NEW connection get an HTTP answer (within half a second)?"""
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as sock:
            sock.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 ")
    except OSError:  # refused, reset, or no answer in time
        return False


def wait_not_served(server: TusServer, within: float) -> None:
    deadline = time.monotonic() + within
    while served(server):
        assert time.monotonic() < deadline, "new connections are still served after SIGTERM"


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def assert_new_patch_gets_no_service(server: TusServer, url: str) -> None:
    """A PATCH sent after the server began shutting down never succeeds: its
    connection is refused or left unanswered, or it is answered 503 (whatever
    bytes of it were read are kept, like those of any stopped request)."""
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=1.0) as sock:
            lines = [f"PATCH {urlsplit(url).path} HTTP/1.1", "Host: 127.0.0.1", "Upload-Offset: 0", "Content-Length: 5"]
            lines += ["Content-Type: application/offset+octet-stream", *(f"{k}: {v}" for k, v in TUS.items())]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\nhello").encode())
            answer = b""
            while not answer.partition(b"\r\n\r\n")[2].endswith(b"\n"):  # the error body is one line
                if not (data := sock.recv(4096)):
                    break
                answer += data
    except OSError:  # refused, reset or no answer within the timeout
        return
    if answer:
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert answer.split(b"\r\n\r\n", 1)[1].startswith(b"ERR_SERVER_SHUTDOWN"), answer


def sigterm_during_slow_patch(
    server: TusServer, url: str, data: bytes, lock_holders: set[int], other_url: str | None = None
) -> tuple[float, int]:
    """Start a slow PATCH, SIGTERM the server while it streams; checks the 503.

    Returns (seconds from SIGTERM to exit, bytes the client had sent).
    """
    lock_file = server.upload_dir / f"{upload_id(url)}.lock"
    slow = SlowPatch(server, url, data)
    try:
        slow.wait_sent(8 * CHUNK)
        deadline = time.monotonic() + TIMEOUT
        while not flock_holders(lock_file) & lock_holders and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flock_holders(lock_file) & lock_holders, "the PATCH never took the upload's lock"

        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        status, body = slow.read_response(timeout=TIMEOUT)
        assert status == 503, body
        assert body.startswith(b"ERR_SERVER_SHUTDOWN"), body
        assert slow.sent < len(data)  # the body really was still streaming
        if other_url is not None:
            assert_new_patch_gets_no_service(server, other_url)
        wait_not_served(server, within=2.0)
        server.process.wait(timeout=TIMEOUT)
        exited = time.monotonic() - signalled
    finally:
        slow.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1.0).close()
    return exited, slow.sent


def assert_bytes_kept_after_restart(  # type: ignore[no-untyped-def]
    make_server, server: TusServer, url: str, data: bytes, sent: int
) -> TusServer:
    """Restart on the same directory: the stopped PATCH's bytes are there (T-CORE-23)."""
    restarted = make_server(upload_dir=server.upload_dir)
    path = restarted.upload_dir / upload_id(url)
    with httpx.Client(timeout=30.0) as client:
        response = head(client, restarted.url + upload_id(url))
    assert response.status_code == 200
    offset = int(response.headers["upload-offset"])
    assert 0 < offset <= sent
    assert offset == path.stat().st_size
    assert path.read_bytes() == data[:offset]
    return restarted


@pytest.mark.parametrize(
    ("flags", "exit_within"),
    [
        (("-shutdown-timeout", "3s"), 3.0 + 1.5),
        ((), 5.0),  # default -shutdown-timeout 10s: a stopped body leaves nothing to wait for
    ],
    ids=["shutdown-timeout-3s", "defaults"],
)
def test_sigterm_stops_a_streaming_patch_with_503_and_keeps_its_bytes(
    make_server, flags: tuple[str, ...], exit_within: float
) -> None:  # type: ignore[no-untyped-def]
    server = make_server(*flags)
    data = random.Random(11).randbytes(2 * MiB)
    with httpx.Client(timeout=30.0) as client:
        url = create(client, server, len(data))
        other_url = create(client, server, 5)
    exited, sent = sigterm_during_slow_patch(server, url, data, {server.process.pid}, other_url)
    assert exited < exit_within, f"exit took {exited:.2f}s"
    restarted = assert_bytes_kept_after_restart(make_server, server, url, data, sent)
    with httpx.Client(timeout=30.0) as client:  # the PATCH that came too late left a consistent upload
        offset = int(head(client, restarted.url + upload_id(other_url)).headers["upload-offset"])
    assert (restarted.upload_dir / upload_id(other_url)).read_bytes() == b"hello"[:offset]


def test_sigterm_to_the_supervisor_stops_a_streaming_patch_on_a_worker(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server("-workers", "2", "-shutdown-timeout", "3s")
    data = random.Random(12).randbytes(2 * MiB)
    with httpx.Client(timeout=30.0) as client:
        url = create(client, server, len(data))  # served by a worker: one is up
    workers = set(worker_pids(server))
    assert len(workers) == 2
    exited, sent = sigterm_during_slow_patch(server, url, data, workers)
    # The supervisor notices signals every 0.5 s, then waits for its workers.
    assert exited < 3.0 + 2.5, f"exit took {exited:.2f}s"
    deadline = time.monotonic() + TIMEOUT  # the workers went first (orphans would keep bytes moving)
    while any(alive(worker) for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(alive(worker) for worker in workers)
    assert_bytes_kept_after_restart(make_server, server, url, data, sent)
