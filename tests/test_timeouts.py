"""-network-timeout: a body that stops moving is answered 500 ERR_READ_TIMEOUT after about the
timeout, keeping every byte that arrived; a body that is slow but keeps moving is never cut."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server
from rawhttp import RawRequest
from tusclient import client as tus_client

KiB = 1 << 10
MiB = 1 << 20
NETWORK_TIMEOUT = 1.0
TIMEOUT = 10.0
SIZE = 2 * MiB
DATA = random.Random(51).randbytes(SIZE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    srv = start_server(tmp_path_factory.mktemp("timeouts") / "uploads", "-network-timeout", "1s")
    yield srv
    srv.stop()


# --- helpers ---------------------------------------------------------------------------------


def upload_headers(offset: int, **extra: str) -> dict[str, str]:
    return {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **extra}


def data_file(server: TusServer, url: str) -> Path:
    return server.upload_dir / url.rsplit("/", 1)[1]


class ThrottlingProxy:
    """A loopback TCP proxy to `port` that passes client-to-server bytes at `rate` bytes/s, in
    pieces of `piece` bytes (so bytes keep flowing, one piece every piece/rate seconds), and
    server-to-client bytes as they come."""

    def __init__(self, port: int, rate: int = 64 * KiB, piece: int = 8 * KiB) -> None:
        self.port_to = port
        self.rate = rate
        self.piece = piece
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.longest_gap = 0.0  # between client-to-server pieces, while a body flows
        self.threads[0].start()

    def __enter__(self) -> ThrottlingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in list(self.threads):
            thread.join(timeout=TIMEOUT)
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                downstream, _ = self.listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.port_to), timeout=TIMEOUT)
            self.sockets += [downstream, upstream]
            for args in ((downstream, upstream, True), (upstream, downstream, False)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                self.threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, target: socket.socket, throttled: bool) -> None:
        source.settimeout(0.1)
        last = None
        while not self.stopping.is_set():
            try:
                data = source.recv(self.piece if throttled else 65536)
            except TimeoutError:
                last = None  # the client is not sending: not a gap in a flowing body
                continue
            except OSError:
                break
            if not data:
                try:
                    target.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                break
            if throttled:
                self.stopping.wait(len(data) / self.rate)
            try:
                target.sendall(data)
            except OSError:
                break
            now = time.monotonic()
            if throttled and last is not None:
                self.longest_gap = max(self.longest_gap, now - last)
            last = now


# --- idle bodies ----------------------------------------------------------------------------


def chunked(data: bytes, size: int = 100_000) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size))


@pytest.mark.parametrize(
    ("framing", "sent"),
    [
        ("content-length", 0),  # headers, then silence
        ("content-length", 100_000),  # less than a block: all of it still in memory
        ("chunked", 3 * MiB // 2 + 17),  # a block on disk, the rest in memory; silent between chunks
        ("chunked-mid-chunk", 5000),  # silent inside a chunk
    ],
)
def test_silent_body_gets_read_timeout_and_keeps_its_bytes(
    server: TusServer, client: httpx.Client, framing: str, sent: int
) -> None:
    # tusd -network-timeout: a body idle for the timeout ends the request with 500
    # ERR_READ_TIMEOUT (clients retry 5xx); every byte received is kept (T-CORE-23).
    url = create(client, server, SIZE)
    path = data_file(server, url)
    extra = {"Content-Length": str(SIZE)} if framing == "content-length" else {"Transfer-Encoding": "chunked"}
    with RawRequest(server, "PATCH", url, upload_headers(0, **extra)) as request:
        if framing == "content-length":
            request.send(DATA[:sent])
        elif framing == "chunked":
            request.send(chunked(DATA[:sent]))
        else:
            request.send(b"%x\r\n%s" % (2 * sent, DATA[:sent]))  # announces twice what comes
        silent_since = time.monotonic()
        response = request.read_response()
        elapsed = time.monotonic() - silent_since
    assert response.status == 500, response
    assert response.body.startswith(b"ERR_READ_TIMEOUT"), response.body
    assert NETWORK_TIMEOUT * 0.9 <= elapsed < NETWORK_TIMEOUT + 2.0, elapsed
    # The client was connected throughout, so every byte it sent reached the server.
    # Fresh connections: the one create() left in the pool has now been idle for the network
    # timeout too, and the server closes it at about this moment.
    with httpx.Client(timeout=30.0) as fresh:
        offset = int(head(fresh, url).headers["upload-offset"])
        assert offset == path.stat().st_size == sent
        assert path.read_bytes() == DATA[:sent]
        assert patch(fresh, url, offset, DATA[offset:]).status_code == 204
    assert path.read_bytes() == DATA


def test_silent_creation_with_upload_keeps_the_upload_and_its_bytes(server: TusServer, client: httpx.Client) -> None:
    # creation-with-upload whose body stalls: 500 ERR_READ_TIMEOUT, but the upload exists
    # (Location given) with the bytes that came, so the client can resume it.
    sent = 70_000
    headers = {**TUS, "Upload-Length": str(SIZE), "Content-Type": "application/offset+octet-stream"}
    with RawRequest(server, "POST", server.url, {**headers, "Content-Length": str(SIZE)}) as request:
        request.send(DATA[:sent])
        silent_since = time.monotonic()
        response = request.read_response()
        elapsed = time.monotonic() - silent_since
    assert response.status == 500, response
    assert response.body.startswith(b"ERR_READ_TIMEOUT"), response.body
    assert NETWORK_TIMEOUT * 0.9 <= elapsed < NETWORK_TIMEOUT + 2.0, elapsed
    url = response.headers["location"]
    assert head(client, url).headers["upload-offset"] == str(sent)
    assert patch(client, url, sent, DATA[sent:]).status_code == 204
    assert data_file(server, url).read_bytes() == DATA


# --- slow bodies ----------------------------------------------------------------------------


def test_slow_but_moving_body_is_never_cut(server: TusServer, client: httpx.Client, tmp_path: Path) -> None:
    # The timeout is per receive, not per request: a body trickling at 64 KiB/s in 8 KiB
    # pieces (one every 0.125 s) takes ~5 s, five times the timeout, and completes.
    size = 300 * KiB
    source = tmp_path / "slow.bin"
    source.write_bytes(DATA[:size])
    with ThrottlingProxy(server.port) as proxy:
        started = time.monotonic()
        with open(source, "rb") as stream:
            uploader = tus_client.TusClient(f"http://127.0.0.1:{proxy.port}/files/").uploader(
                file_stream=stream, chunk_size=size
            )
            uploader.upload()  # raises on any non-2xx answer
        elapsed = time.monotonic() - started
        longest_gap = proxy.longest_gap
    assert elapsed > 4 * NETWORK_TIMEOUT  # it really was slow
    assert longest_gap < 0.2  # and never idle for long
    url = uploader.url
    assert url is not None
    assert head(client, server.url + url.rsplit("/", 1)[1]).headers["upload-offset"] == str(size)
    assert data_file(server, url).read_bytes() == DATA[:size]
