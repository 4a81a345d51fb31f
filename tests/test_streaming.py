"""Request bodies as real clients send them: chunked, behind `Expect: 100-continue`,
cut off mid-way, and far larger than memory should allow."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, StreamedBody, TusServer, create, head, patch, proc_status_kib

TIMEOUT = 10.0
MiB = 1 << 20


# --- a minimal raw HTTP/1.1 connection ---------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lowercased names
    body: bytes


class RawConnection:
    """Just enough HTTP/1.1 to send exactly the bytes a test wants, and read answers."""

    def __init__(self, server: TusServer) -> None:
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        self._buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_head(self, method: str, url: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{self.server.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_chunk(self, data: bytes) -> None:
        """One chunk of a chunked body; an empty one ends the body."""
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def read_response(self) -> RawResponse:
        """The next response (interim 1xx ones included) with its Content-Length body."""
        while b"\r\n\r\n" not in self._buffer:
            self._recv()
        head_bytes, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._recv()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return RawResponse(int(status), headers, body)

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self._buffer += data


def patch_headers(offset: int, **extra: str) -> dict[str, str]:
    return {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **extra}


def data_file(server: TusServer, url: str) -> Path:
    return server.upload_dir / url.rsplit("/", 1)[1]


def wait_for_stable_offset(client: httpx.Client, server: TusServer, url: str) -> int:
    """Poll HEAD (bounded) until two answers agree and match the data file's size."""
    deadline = time.monotonic() + TIMEOUT
    previous = None
    while time.monotonic() < deadline:
        offset = int(head(client, url).headers["upload-offset"])
        if offset == previous == data_file(server, url).stat().st_size:
            return offset
        previous = offset
        time.sleep(0.02)
    raise AssertionError(f"offset never settled (last {previous}, file {data_file(server, url).stat().st_size})")


def wait_for_file_size(path: Path, at_least: int, timeout: float = TIMEOUT) -> int:
    """Poll (bounded) until the data file holds at least `at_least` bytes; its size."""
    deadline = time.monotonic() + timeout
    while (size := path.stat().st_size) < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
    return size


# --- chunked bodies ----------------------------------------------------------------------------


def test_chunked_patch_with_many_small_chunks(server: TusServer, client: httpx.Client) -> None:
    # HTTP/1.1 chunked transfer coding: no Content-Length, bytes arrive in odd sizes (T-CORE-20).
    data = random.Random(1).randbytes(50_000)
    sizes = [1, 2, 3, 7, 100, 1, 1000, 13]
    url = create(client, server, len(data))
    with RawConnection(server) as conn:
        conn.send_head("PATCH", url, patch_headers(0, **{"Transfer-Encoding": "chunked"}))
        position, i = 0, 0
        while position < len(data):
            size = sizes[i % len(sizes)]
            conn.send_chunk(data[position : position + size])
            position, i = position + size, i + 1
        conn.send_chunk(b"")
        response = conn.read_response()
    assert i > 300  # really many chunks
    assert response.status == 204, response.body
    assert response.headers["upload-offset"] == str(len(data))
    assert data_file(server, url).read_bytes() == data


def test_chunked_body_longer_than_upload_stores_up_to_length_then_413(server: TusServer, client: httpx.Client) -> None:
    # A-3 (tusd): with no Content-Length to check up front, bytes up to the length are kept, then 413.
    url = create(client, server, 10)
    assert patch(client, url, 0, b"abc").status_code == 204
    with RawConnection(server) as conn:
        conn.send_head("PATCH", url, patch_headers(3, **{"Transfer-Encoding": "chunked"}))
        for chunk in (b"defg", b"hij", b"klmnop", b"qrstuvwxyz"):
            conn.send_chunk(chunk)
        conn.send_chunk(b"")
        response = conn.read_response()
    assert response.status == 413
    assert response.body.startswith(b"ERR_UPLOAD_SIZE_EXCEEDED")
    assert head(client, url).headers["upload-offset"] == "10"
    assert data_file(server, url).read_bytes() == b"abcdefghij"


# --- Expect: 100-continue ------------------------------------------------------------------------


def test_expect_100_continue_patch(server: TusServer, client: httpx.Client) -> None:
    # RFC 9110 §10.1.1: the client waits for 100 Continue before sending the body (T-CWU-4 clients).
    url = create(client, server, 11)
    with RawConnection(server) as conn:
        conn.send_head("PATCH", url, patch_headers(0, Expect="100-continue", **{"Content-Length": "11"}))
        interim = conn.read_response()
        assert interim.status == 100
        conn.send(b"hello world")
        response = conn.read_response()
    assert response.status == 204, response.body
    assert response.headers["upload-offset"] == "11"
    assert data_file(server, url).read_bytes() == b"hello world"


def test_expect_100_continue_chunked_patch(server: TusServer, client: httpx.Client) -> None:
    # tus-java-client / TUSKit style: chunked body behind Expect: 100-continue.
    url = create(client, server, 11)
    with RawConnection(server) as conn:
        conn.send_head("PATCH", url, patch_headers(0, Expect="100-continue", **{"Transfer-Encoding": "chunked"}))
        assert conn.read_response().status == 100
        conn.send_chunk(b"hello")
        conn.send_chunk(b" world")
        conn.send_chunk(b"")
        response = conn.read_response()
    assert response.status == 204, response.body
    assert data_file(server, url).read_bytes() == b"hello world"


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("wrong-offset", 409),
        ("wrong-content-type", 415),
        ("too-long", 413),
        ("unknown-upload", 404),
        ("bad-checksum-header", 400),
    ],
)
def test_rejected_expect_100_continue_gets_no_100(
    server: TusServer, client: httpx.Client, case: str, status: int
) -> None:
    # Every header is validated before the body is read, so the body is never asked for.
    url = create(client, server, 11)
    assert patch(client, url, 0, b"hello").status_code == 204
    headers = patch_headers(5, Expect="100-continue", **{"Content-Length": "6"})
    if case == "wrong-offset":
        headers["Upload-Offset"] = "0"
    elif case == "wrong-content-type":
        headers["Content-Type"] = "application/octet-stream"
    elif case == "too-long":
        headers["Content-Length"] = "7"
    elif case == "unknown-upload":
        url = server.url + "f" * 32
    elif case == "bad-checksum-header":
        headers["Upload-Checksum"] = "crc32 AAAAAA=="
    with RawConnection(server) as conn:
        conn.send_head("PATCH", url, headers)
        response = conn.read_response()  # the very first response line
    assert response.status == status, response.body
    if case == "wrong-offset":
        assert response.headers["upload-offset"] == "5"
    if case != "unknown-upload":
        assert data_file(server, url).read_bytes() == b"hello"


# --- interrupted bodies ---------------------------------------------------------------------------


def test_dropped_patch_keeps_received_bytes_and_resumes(server: TusServer, client: httpx.Client) -> None:
    # T-CORE-23: keep as much as was received; HEAD offset == bytes on disk; resume completes.
    data = random.Random(2).randbytes(4 * MiB)
    sent = 3 * MiB // 2
    url = create(client, server, len(data))
    path = data_file(server, url)
    with RawConnection(server) as conn:
        conn.send_head("PATCH", url, patch_headers(0, **{"Content-Length": str(len(data))}))
        conn.send(data[:sent])
        # A lower bound of the bytes the server received: those already on disk (bounded wait).
        received = wait_for_file_size(path, 1, timeout=3.0)
    offset = wait_for_stable_offset(client, server, url)
    assert 0 < offset <= sent
    assert offset >= received
    assert path.read_bytes() == data[:offset]

    response = patch(client, url, offset, data[offset:])
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(len(data))
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_dropped_chunked_patch_keeps_received_bytes(server: TusServer, client: httpx.Client) -> None:
    # T-CORE-23 for a chunked body cut between chunks: every complete chunk was received.
    url = create(client, server, None)  # deferred length, as streaming clients do
    with RawConnection(server) as conn:
        conn.send_head("PATCH", url, patch_headers(0, **{"Transfer-Encoding": "chunked"}))
        for _ in range(3):
            conn.send_chunk(b"x" * 1000)
        conn.send(b"3e8\r\nxxxx")  # a chunk cut short
    offset = wait_for_stable_offset(client, server, url)
    assert offset <= 3004
    assert data_file(server, url).read_bytes() == b"x" * offset
    assert patch(client, url, offset, b"y", **{"Upload-Length": str(offset + 1)}).status_code == 204
    assert head(client, url).headers["upload-length"] == str(offset + 1)


# --- memory: a 1 GiB upload streams through -----------------------------------------------------


def test_one_gib_upload_streams_in_bounded_memory(make_server, client: httpx.Client) -> None:
    # The body is never held in memory, neither by the test nor by the server.
    server = make_server()
    size = 1 << 30
    url = create(client, server, size)
    assert head(client, url).status_code == 200  # warm the request path before measuring
    before = proc_status_kib(server.process.pid)
    body = StreamedBody(size)
    response = client.patch(url, content=body, headers=patch_headers(0, **{"Content-Length": str(size)}))
    after = proc_status_kib(server.process.pid)
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(size)
    growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    assert growth_mib < 50, f"server RSS grew by {growth_mib:.1f} MiB ({before} -> {after})"

    path = data_file(server, url)
    assert path.stat().st_size == size
    stored = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            stored.update(block)
    assert stored.hexdigest() == body.sha256.hexdigest()
    os.unlink(path)  # 1 GiB is too much to leave behind until the tmp dir is cleaned
