"""Slow and oversized clients: they are cut or refused, and never starve anyone else.

- Slowloris: 200 connections at once, half trickling their headers a byte every 0.5 s, half
  sending valid PATCH headers and a few body bytes then going silent. With
  `-network-timeout 2s` the first kind is closed by the header deadline
  (tusd_py/http_protocol.py, tusd's ReadHeaderTimeout) and the second answered 500
  ERR_READ_TIMEOUT (body idle timeout), all within a bounded time, while a 20 MiB upload
  beside them runs at full speed. Memory and file descriptors come back to baseline.
- After the response, a connection is still bounded: a client that trickles the unread rest
  of a body, or never reads a download, is cut too (tusd: IdleTimeout and a write deadline).
- Limits: headers over `-max-header-size` (431), Upload-Metadata over `-max-metadata-size`
  (400), more partials than `-max-concat-partials` (400), defaults and custom flags.
"""

from __future__ import annotations

import base64
import os
import random
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, start_server

KiB = 1 << 10
MiB = 1 << 20
NETWORK_TIMEOUT = 2.0
OCTET = "application/offset+octet-stream"
SLOW_CONNECTIONS = 200
TRICKLE_INTERVAL = 0.5
BIG = random.Random(77).randbytes(20 * MiB)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    srv = start_server(tmp_path_factory.mktemp("slow-clients") / "uploads", "-network-timeout", "2s")
    yield srv
    srv.stop()


# --- process accounting ------------------------------------------------------------------------


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KiB
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_fds(pid: int, limit: int, timeout: float) -> int:
    """Poll (bounded) until the server holds at most `limit` descriptors; the last count."""
    deadline = time.monotonic() + timeout
    while (count := open_fds(pid)) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def path_of(url: str) -> str:
    return urlsplit(url).path


# --- slowloris -----------------------------------------------------------------------------------


@dataclass
class Slow:
    kind: str  # "headers" (trickled) or "body" (valid headers, a few bytes, then silence)
    sock: socket.socket
    opened: float
    to_send: bytes = b""  # what "headers" still trickles
    received: bytes = b""
    cut_after: float | None = None  # seconds from opening to the server closing it

    @property
    def status_line(self) -> bytes:
        return self.received.split(b"\r\n", 1)[0]


def open_slow(server: TusServer, kind: str, url: str = "") -> Slow:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.setblocking(False)
    slow = Slow(kind, sock, time.monotonic())
    if kind == "headers":
        # A complete, valid request would take ~40 s at this rate.
        slow.to_send = (
            f"PATCH /files/{'0' * 32} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: {OCTET}\r\nUpload-Offset: 0\r\nContent-Length: 1\r\n\r\nx"
        ).encode()
        trickle(slow)
    else:
        request = (
            f"PATCH {path_of(url)} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTET}\r\n"
            f"Upload-Offset: 0\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
        ).encode()
        sock.sendall(request + b"abc")
    return slow


def trickle(slow: Slow) -> None:
    try:
        slow.sock.send(slow.to_send[:1])
        slow.to_send = slow.to_send[1:]
    except OSError:
        slow.cut_after = time.monotonic() - slow.opened


def watch(slows: list[Slow], deadline: float, on_tick) -> None:  # type: ignore[no-untyped-def]
    """Trickle every TRICKLE_INTERVAL and record when the server hangs up on each connection."""
    with selectors.DefaultSelector() as selector:
        for slow in slows:
            selector.register(slow.sock, selectors.EVENT_READ, slow)
        next_tick = time.monotonic() + TRICKLE_INTERVAL
        while any(s.cut_after is None for s in slows) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, min(next_tick, deadline) - time.monotonic())):
                slow = key.data
                try:
                    data = slow.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    slow.received += data
                else:
                    slow.cut_after = time.monotonic() - slow.opened
                    selector.unregister(slow.sock)
            if time.monotonic() >= next_tick:
                next_tick += TRICKLE_INTERVAL
                for slow in slows:
                    if slow.kind == "headers" and slow.cut_after is None:
                        trickle(slow)
                on_tick()


@dataclass
class Usage:
    pid: int
    peak_rss: int = 0
    peak_fds: int = 0
    samples: list[tuple[int, int]] = field(default_factory=list)

    def sample(self) -> None:
        current = (rss(self.pid), open_fds(self.pid))
        self.samples.append(current)
        self.peak_rss = max(self.peak_rss, current[0])
        self.peak_fds = max(self.peak_fds, current[1])


def upload_big(server: TusServer, result: dict[str, object]) -> None:
    try:
        with httpx.Client(timeout=30.0) as client:
            url = create(client, server, len(BIG))
            started = time.monotonic()
            response = client.patch(url, content=BIG, headers={**TUS, "Content-Type": OCTET, "Upload-Offset": "0"})
            result["elapsed"] = time.monotonic() - started
            result["status"] = response.status_code
            result["url"] = url
    except Exception as error:  # noqa: BLE001 - reported by the test
        result["error"] = repr(error)


def test_slowloris_is_cut_and_does_not_starve_a_big_upload(server: TusServer, client: httpx.Client) -> None:
    # tusd -network-timeout: ReadHeaderTimeout for headers, per-read deadline for bodies (500
    # ERR_READ_TIMEOUT, T-CORE-23: bytes kept). One process serves them all with asyncio, so a
    # slow connection must cost a socket and a timer, not a worker.
    pid = server.process.pid
    warm = create(client, server, 10)  # first requests load code and threads: not a leak
    assert client.head(warm, headers=TUS).status_code == 200
    body_urls = [create(client, server, 1000) for _ in range(SLOW_CONNECTIONS // 2)]
    baseline_fds, baseline_rss = open_fds(pid), rss(pid)
    usage = Usage(pid)

    slows = [open_slow(server, "headers") for _ in range(SLOW_CONNECTIONS // 2)]
    slows += [open_slow(server, "body", url) for url in body_urls]
    last_opened = time.monotonic()
    result: dict[str, object] = {}
    big = threading.Thread(target=upload_big, args=(server, result))
    big.start()
    try:
        watch(slows, deadline=last_opened + NETWORK_TIMEOUT + 6.0, on_tick=usage.sample)
    finally:
        big.join(timeout=30)
        for slow in slows:
            slow.sock.close()
    usage.sample()

    # The big upload ran beside them at full speed (well under a second here; 5 s is starvation).
    assert result.get("status") == 204, result
    assert result["elapsed"] < 5.0, result  # type: ignore[operator]
    assert (server.upload_dir / str(result["url"]).rsplit("/", 1)[1]).read_bytes() == BIG

    # Every slow connection was cut, about NETWORK_TIMEOUT after it opened (or went silent).
    uncut = [s for s in slows if s.cut_after is None]
    assert not uncut, f"{len(uncut)} slow connections still open: {[s.kind for s in uncut][:5]}"
    latest = max(s.cut_after for s in slows if s.cut_after is not None)
    assert latest < NETWORK_TIMEOUT + 4.0, latest
    for slow in slows:
        assert slow.cut_after is not None and slow.cut_after > NETWORK_TIMEOUT * 0.8, (slow.kind, slow.cut_after)
        if slow.kind == "headers":
            assert slow.received == b"", slow.received[:200]  # closed, not answered: no request yet
        else:
            assert slow.status_line == b"HTTP/1.1 500 Internal Server Error", slow.received[:200]
            assert b"\r\n\r\nERR_READ_TIMEOUT: " in slow.received, slow.received[:300]
    # The stalled bodies kept what they sent (T-CORE-23).
    assert {head(client, url).headers["upload-offset"] for url in body_urls} == {"3"}

    # Descriptors and memory: bounded while they were open, back near baseline after.
    # (a stalled PATCH holds its socket, its lock file and its data file)
    assert usage.peak_fds < baseline_fds + 3 * SLOW_CONNECTIONS + 50, (baseline_fds, usage.peak_fds)
    assert usage.peak_rss < baseline_rss + 64 * MiB, (baseline_rss // MiB, usage.peak_rss // MiB)
    assert wait_for_fds(pid, baseline_fds + 5, timeout=5.0) <= baseline_fds + 5
    assert server.process.poll() is None


# --- after the response: unread bodies and slow readers ------------------------------------------


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    srv = start_server(tmp_path_factory.mktemp("slow-clients-quick") / "uploads", "-network-timeout", "1s")
    yield srv
    srv.stop()


def closed_within(sock: socket.socket, seconds: float, keep_sending: bool) -> float | None:
    """Seconds until the server closes the connection (None if it is still open after `seconds`),
    reading whatever it sends and, if asked, sending a byte every 0.5 s."""
    started = time.monotonic()
    deadline = started + seconds
    sock.settimeout(TRICKLE_INTERVAL)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        if keep_sending:
            try:
                sock.send(b"x")
            except OSError:
                return time.monotonic() - started
    return None


@pytest.mark.parametrize("then", ["trickle", "silence"])
def test_unread_body_after_the_response_does_not_hold_the_connection(quick_server: TusServer, then: str) -> None:
    # A request answered without reading its body (here OPTIONS with Content-Length: 1 MB) leaves
    # the connection in the body. A client that then trickles the rest a byte at a time, or
    # sends one byte and goes silent, must still be cut: tusd's IdleTimeout / read deadline.
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=5) as sock:
        sock.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"x")
        elapsed = closed_within(sock, 5.0, keep_sending=then == "trickle")
    assert elapsed is not None, "connection still open 5 s after its response (network timeout 1 s)"


@pytest.fixture(scope="module")
def big_download(quick_server: TusServer) -> str:
    with httpx.Client(timeout=30.0) as client:
        url = create(client, quick_server, len(BIG))
        response = client.patch(url, content=BIG, headers={**TUS, "Content-Type": OCTET, "Upload-Offset": "0"})
    assert response.status_code == 204
    return url


def start_download(server: TusServer, url: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path_of(url)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def read_all(sock: socket.socket) -> bytes:
    received = bytearray()
    try:
        while chunk := sock.recv(MiB):
            received += chunk
            if received.endswith(BIG[-64:]):
                break
    except OSError:
        pass
    return bytes(received)


def test_a_client_that_never_reads_its_download_is_cut(quick_server: TusServer, big_download: str) -> None:
    # Slow-read: GET of a 20 MiB upload by a client that reads nothing. tusd has a write
    # deadline (2 x -network-timeout); without one the connection, its open file and its task
    # live as long as the client likes.
    pid = quick_server.process.pid
    baseline_fds = open_fds(pid)
    with start_download(quick_server, big_download) as sock:
        time.sleep(4.0)  # the client stalls: twice tusd's write deadline (2 x 1 s)
        received = read_all(sock)
    assert len(received) < len(BIG), "the whole download was still waiting for a client that never read"
    assert wait_for_fds(pid, baseline_fds, timeout=5.0) <= baseline_fds  # socket and file closed


def test_a_slow_but_reading_download_is_not_cut(quick_server: TusServer, big_download: str) -> None:
    # The write deadline is about a stalled client, not a slow one: reading 64 KiB every 0.25 s
    # for three times the timeout keeps the download going; then it completes intact.
    with start_download(quick_server, big_download) as sock:
        received = bytearray()
        slow_until = time.monotonic() + 3.0
        while time.monotonic() < slow_until:
            chunk = sock.recv(64 * KiB)
            assert chunk, "the server cut a download that was being read"
            received += chunk
            time.sleep(0.25)  # the client is slow: this is its reading pace
        received += read_all(sock)
    assert received.partition(b"\r\n\r\n")[2] == BIG


# --- limits ------------------------------------------------------------------------------------------


def raw_exchange(server: TusServer, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send a raw request (Connection: close) and return the status and body; (0, b"") if closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass  # refused early; the answer may be waiting
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    if not received:
        return 0, b""
    head_part, _, body = received.partition(b"\r\n\r\n")
    return int(head_part.split(b" ")[1]), body


def post_with(server: TusServer, extra_headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    lines = ["POST /files/ HTTP/1.1", "Host: 127.0.0.1", "Tus-Resumable: 1.0.0", "Upload-Length: 1"]
    lines += [f"{name}: {value}" for name, value in extra_headers]
    lines += ["Connection: close", "", ""]
    return raw_exchange(server, "\r\n".join(lines).encode())


def header_bytes(extra: list[tuple[str, str]]) -> int:
    """What the server counts: name + value of every header it receives (see post_with)."""
    base = [("host", "127.0.0.1"), ("tus-resumable", "1.0.0"), ("upload-length", "1"), ("connection", "close")]
    return sum(len(n) + len(v) for n, v in base + extra)


def padding(total: int, count: int = 1) -> list[tuple[str, str]]:
    """`count` X-Pad-N headers bringing the total header size to exactly `total` bytes."""
    names = [f"X-Pad-{i:04d}" for i in range(count)]
    room = total - header_bytes([(name, "") for name in names])
    sizes = [room // count + (1 if i < room % count else 0) for i in range(count)]
    return [(name, "p" * size) for name, size in zip(names, sizes, strict=True)]


def assert_refused(status: int, body: bytes, code: str, expected: int) -> None:
    assert status == expected, (status, body[:200])
    assert body.startswith(code.encode() + b": "), body[:200]


@pytest.mark.parametrize(
    ("total", "count", "expected"),
    [
        (64 * KiB, 1, 201),  # at the limit: fine
        (64 * KiB + 1, 1, 431),
        (64 * KiB + 1, 1000, 431),  # many small headers count as much as one big one
        (1 * MiB, 1, 431),
        (1 * MiB, 10000, 431),
    ],
)
def test_total_header_size_over_the_default_limit_is_431(
    server: TusServer, total: int, count: int, expected: int
) -> None:
    # -max-header-size (default 65536): headers over it answer 431 ERR_HEADERS_TOO_LARGE
    # (the HTTP parser may refuse first with its own 400; never a 500).
    headers = padding(total, count)
    assert header_bytes(headers) == total
    status, body = post_with(server, headers)
    if expected == 201:
        assert status == 201, (status, body[:200])
    else:
        assert status in (400, 431), (status, body[:200])
        if status == 431:
            assert body.startswith(b"ERR_HEADERS_TOO_LARGE: "), body[:200]


def metadata_header(length: int, pairs: int = 1) -> str:
    """A valid Upload-Metadata value of exactly `length` characters."""
    values = [f"k{i:05d} {base64.b64encode(b'v' * 30).decode()}" for i in range(pairs - 1)]
    prefix = ",".join(values) + ("," if values else "")
    room = length - len(prefix) - len(" ") - 8  # the last value is 8 characters of base64
    return prefix + "k" * room + " " + base64.b64encode(b"vvvvvv").decode()


@pytest.mark.parametrize(
    ("length", "pairs", "expected"),
    [(16 * KiB, 1, 201), (16 * KiB, 200, 201), (16 * KiB + 1, 1, 400), (16 * KiB + 1, 200, 400), (60 * KiB, 1, 400)],
)
def test_metadata_over_the_default_limit_is_400(
    server: TusServer, client: httpx.Client, length: int, pairs: int, expected: int
) -> None:
    # -max-metadata-size (default 16384): a larger Upload-Metadata is 400 ERR_INVALID_METADATA.
    value = metadata_header(length, pairs)
    assert len(value) == length
    response = client.post(server.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": value})
    assert response.status_code == expected, response.text[:200]
    if expected == 400:
        assert response.text.startswith("ERR_INVALID_METADATA: ")
    else:
        stored = head(client, response.headers["location"]).headers["upload-metadata"]
        assert len(stored.split(",")) == pairs


@pytest.fixture(scope="module")
def finished_partial(server: TusServer) -> str:
    with httpx.Client(timeout=30.0) as client:
        response = client.post(
            server.url,
            headers={**TUS, "Upload-Length": "3", "Upload-Concat": "partial", "Content-Type": OCTET},
            content=b"abc",
        )
    assert response.status_code == 201, response.text
    return path_of(response.headers["location"])


def test_final_listing_1000_partials_is_accepted(
    server: TusServer, client: httpx.Client, finished_partial: str
) -> None:
    # -max-concat-partials (default 1000): at the limit, a final is built (the same partial may repeat).
    response = client.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join([finished_partial] * 1000)})
    assert response.status_code == 201, response.text
    assert head(client, response.headers["location"]).headers["upload-length"] == "3000"


@pytest.mark.parametrize("listed", ["repeated", "unknown"])
def test_final_listing_1001_partials_is_400(
    server: TusServer, client: httpx.Client, finished_partial: str, listed: str
) -> None:
    # One over the limit: 400 ERR_INVALID_CONCAT, decided before any partial is looked up
    # (so 1001 unknown ids answer 400, not 404).
    partials = [finished_partial] * 1001 if listed == "repeated" else [f"/files/{i:032x}" for i in range(1001)]
    response = client.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(partials)})
    assert response.status_code == 400, response.text[:200]
    assert response.text.startswith("ERR_INVALID_CONCAT: ")


def test_custom_limits(make_server) -> None:  # type: ignore[no-untyped-def]
    # The three limits follow their flags (boundary: at the limit passes, one over is refused).
    srv = make_server("-max-header-size", "2048", "-max-metadata-size", "100", "-max-concat-partials", "3")
    with httpx.Client(timeout=30.0) as client:
        status, body = post_with(srv, padding(2048))
        assert status == 201, body
        status, body = post_with(srv, padding(2049, 3))
        assert_refused(status, body, "ERR_HEADERS_TOO_LARGE", 431)

        def post(**headers: str) -> httpx.Response:
            return client.post(srv.url, headers={**TUS, **headers})

        assert post(**{"Upload-Length": "1", "Upload-Metadata": metadata_header(100)}).status_code == 201
        response = post(**{"Upload-Length": "1", "Upload-Metadata": metadata_header(101)})
        assert response.status_code == 400 and response.text.startswith("ERR_INVALID_METADATA: "), response.text

        partial = client.post(
            srv.url,
            headers={**TUS, "Upload-Length": "1", "Upload-Concat": "partial", "Content-Type": OCTET},
            content=b"z",
        ).headers["location"]
        response = post(**{"Upload-Concat": "final;" + " ".join([path_of(partial)] * 3)})
        assert response.status_code == 201, response.text
        response = post(**{"Upload-Concat": "final;" + " ".join([path_of(partial)] * 4)})
        assert response.status_code == 400 and response.text.startswith("ERR_INVALID_CONCAT: "), response.text
