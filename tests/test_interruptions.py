"""Interruptions lose nothing: a client that drops mid-PATCH (FIN or RST, Content-Length or
chunked, early or late in the body) leaves an upload whose offset is exactly the bytes on disk,
and resuming from that offset gives a byte-identical file. A cut checksummed request counts none
of its bytes."""

from __future__ import annotations

import base64
import hashlib
import random
import socket
import struct
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch

from tusd_py.body import BLOCK_SIZE

TIMEOUT = 10.0
KiB = 1 << 10
MiB = 1 << 20
SIZE = 8 * MiB
DATA = random.Random(31).randbytes(SIZE)
# uvicorn pauses reading once it buffers more than 64 KiB, and one socket read adds at most 256 KiB.
UVICORN_SLACK = 64 * KiB + 256 * KiB

# Cut points (bytes of upload data sent before the drop): two inside the server's first
# 1 MiB block (only buffered, nothing on disk yet) and two after several MiB, one dropped while
# megabytes are still in flight and one once the server has written all it can.
_rng = random.Random(20240603)
EARLY_CUTS = sorted(_rng.randrange(1, BLOCK_SIZE) for _ in range(2))
LATE_CUTS = sorted(_rng.randrange(3 * MiB, 7 * MiB) for _ in range(2))
CUTS = [
    *(pytest.param(cut, False, id=f"{cut}-early") for cut in EARLY_CUTS),
    pytest.param(LATE_CUTS[0], False, id=f"{LATE_CUTS[0]}-in-flight"),
    pytest.param(LATE_CUTS[1], True, id=f"{LATE_CUTS[1]}-after-writes"),
]


# --- helpers ---------------------------------------------------------------------------------


class CutConnection:
    """A raw HTTP/1.1 connection that sends a PATCH body and then drops."""

    def __init__(self, server: TusServer) -> None:
        self.port = server.port
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)

    def __enter__(self) -> CutConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send_head(self, url: str, headers: dict[str, str]) -> None:
        lines = [f"PATCH {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send_body(self, data: bytes, chunked: bool, rng: random.Random) -> None:
        """Send `data` as (part of) the body; chunked: in chunks of random sizes, the last one
        possibly cut short (its size line announces more than is sent)."""
        if not chunked:
            self.sock.sendall(data)
            return
        position = 0
        while position < len(data):
            size = rng.randrange(1, 128 * KiB)
            piece = data[position : position + size]
            self.sock.sendall(b"%x\r\n%s" % (size, piece))
            position += len(piece)
            if len(piece) == size:
                self.sock.sendall(b"\r\n")

    def drop(self, how: str) -> None:
        if how == "fin":
            # An orderly close: FIN, then wait (bounded) for the server to close its side,
            # reading whatever it answers so that our close() cannot turn into an RST.
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + TIMEOUT
            try:
                while time.monotonic() < deadline and self.sock.recv(65536):
                    pass
            except OSError:
                pass
        else:
            # An abortive close: SO_LINGER on with timeout 0 makes close() send RST.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def patch_headers(offset: int, **extra: str) -> dict[str, str]:
    return {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **extra}


def data_file(server: TusServer, url: str) -> Path:
    return server.upload_dir / url.rsplit("/", 1)[1]


def leftovers(server: TusServer, url: str) -> list[str]:
    """Files of this upload besides its data, .info and lock file (.rollback, .stop, temp files).
    The lock file lives as long as the upload (lockers/file.py)."""
    upload_id = url.rsplit("/", 1)[1]
    return sorted(
        p.name
        for p in server.upload_dir.iterdir()
        if p.name.startswith(upload_id) and p.name not in (upload_id, upload_id + ".info", upload_id + ".lock")
    )


def settle(client: httpx.Client, server: TusServer, url: str) -> int:
    """Poll HEAD (bounded) until two consecutive answers agree, the offset equals the data
    file's size and the .info is unchanged in between; returns the offset."""
    path = data_file(server, url)
    info = path.with_name(path.name + ".info")
    deadline = time.monotonic() + TIMEOUT
    previous = None
    while time.monotonic() < deadline:
        response = head(client, url)
        assert response.status_code == 200, response.status_code
        snapshot = (int(response.headers["upload-offset"]), path.stat().st_size, info.read_bytes())
        if snapshot == previous and snapshot[0] == snapshot[1]:
            return snapshot[0]
        previous = snapshot
        time.sleep(0.02)
    raise AssertionError(f"upload never settled: last (offset, size) {previous and previous[:2]}")


def wait_for_file_size(path: Path, at_least: int) -> int:
    """Poll (bounded) until the data file holds at least `at_least` bytes; returns its size."""
    deadline = time.monotonic() + TIMEOUT
    while (size := path.stat().st_size) < at_least and time.monotonic() < deadline:
        time.sleep(0.005)
    return size


def assert_resumes_byte_identical(client: httpx.Client, server: TusServer, url: str, offset: int) -> None:
    response = patch(client, url, offset, DATA[offset:])
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(SIZE)
    assert hashlib.sha256(data_file(server, url).read_bytes()).digest() == hashlib.sha256(DATA).digest()


# --- plain requests: what arrived is kept ------------------------------------------------------


@pytest.mark.parametrize(("cut", "wait_for_writes"), CUTS)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_dropped_patch_offset_is_bytes_on_disk_and_resume_is_identical(
    server: TusServer, client: httpx.Client, how: str, framing: str, cut: int, wait_for_writes: bool
) -> None:
    # T-CORE-23: the server keeps as much of an interrupted body as it received; HEAD reports
    # exactly the stored bytes (T-CORE-9); resuming from there completes the file.
    url = create(client, server, SIZE)
    path = data_file(server, url)
    chunked = framing == "chunked"
    extra = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(SIZE)}
    with CutConnection(server) as conn:
        conn.send_head(url, patch_headers(0, **extra))
        conn.send_body(DATA[:cut], chunked, random.Random(cut))
        # Whatever is on disk before the drop must survive it. The server writes a block once
        # it holds BLOCK_SIZE bytes, so more than cut - BLOCK_SIZE bytes get there (bounded wait).
        on_disk = wait_for_file_size(path, cut - BLOCK_SIZE + 1) if wait_for_writes else path.stat().st_size
        conn.drop(how)

    offset = settle(client, server, url)
    assert on_disk <= offset <= cut
    if how == "fin":
        # After a FIN every sent byte reaches uvicorn; only what it buffered but had not yet
        # handed to the app may be lost (the documented uvicorn caveat). An RST may also
        # discard what sat in the server's kernel receive queue, so it has no such bound.
        assert cut - offset <= UVICORN_SLACK
    assert path.read_bytes() == DATA[:offset]
    assert leftovers(server, url) == []
    assert_resumes_byte_identical(client, server, url, offset)


# --- checksummed requests: all or nothing ----------------------------------------------------


@pytest.mark.parametrize("cut", [EARLY_CUTS[0], LATE_CUTS[1]])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_cut_checksummed_patch_counts_none_of_its_bytes(
    server: TusServer, client: httpx.Client, how: str, framing: str, cut: int
) -> None:
    # T-CHK-5 corollary: bytes of a checksummed request count only once verified; a cut one
    # leaves offset and data exactly as before it started, and no .rollback marker.
    start = 100 * KiB + 7
    url = create(client, server, SIZE)
    path = data_file(server, url)
    assert patch(client, url, 0, DATA[:start]).status_code == 204
    body = DATA[start:]
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    chunked = framing == "chunked"
    extra = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(len(body))}
    with CutConnection(server) as conn:
        conn.send_head(url, patch_headers(start, **{"Upload-Checksum": f"sha256 {digest}"}, **extra))
        conn.send_body(body[:cut], chunked, random.Random(cut))
        if cut >= BLOCK_SIZE:
            # Make the case hard: some of the request's bytes already reached the data file.
            assert wait_for_file_size(path, start + cut - BLOCK_SIZE + 1) > start
        conn.drop(how)

    assert settle(client, server, url) == start
    assert path.read_bytes() == DATA[:start]
    assert leftovers(server, url) == []
    assert_resumes_byte_identical(client, server, url, start)
