"""Bodies read straight from the socket (tusd_py/socket_body.py), against a real uvicorn
running tusd-py's HTTP protocol and a minimal app that reads with BodyReader
(tests/socket_body_app.py): what is taken over, and that the connection stays exact around
it: keep-alive, a request pipelined behind the body, a body the app stops reading, a client
that leaves, Expect: 100-continue."""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, stop_process

from tusd_py.body import BLOCK_SIZE
from tusd_py.socket_body import SOCKET_BODY_MIN

TIMEOUT = 15.0
MiB = 1 << 20
BODY = os.urandom(5 * MiB + 12345)
TESTS = Path(__file__).parent


class Server:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("socket_body") / "uvicorn.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(TESTS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        "tusd_py.http_protocol:TimedHttpToolsProtocol",
        "--loop",
        "uvloop",
        "socket_body_app:app",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert process.stderr is not None
    deadline = time.monotonic() + TIMEOUT
    with selectors.DefaultSelector() as selector, open(log, "wb") as copy:
        selector.register(process.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline and selector.select(timeout=max(0.0, deadline - time.monotonic())):
            line = process.stderr.readline()
            copy.write(line)
            if not line or b"Uvicorn running on" in line:
                break
        else:
            line = b""
    if b"Uvicorn running on" not in line:
        process.kill()
        process.wait(timeout=10)
        pytest.fail(f"uvicorn did not start: {log.read_text(errors='replace')}")
    yield Server(port, process)
    stop_process(process)
    process.stderr.close()


class Connection:
    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        self.buffer = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes, piece: int = 64 * 1024) -> None:
        for start in range(0, len(data), piece):
            self.sock.sendall(data[start : start + piece])

    def response(self) -> tuple[int, bytes]:
        """The next response (status, body); raises if none comes within TIMEOUT."""
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self.buffer:
            self._recv(deadline)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split(" ")[1] == "100":
            return self.response()
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._recv(deadline)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split(" ")[1]), body

    def result(self) -> dict[str, Any]:
        status, body = self.response()
        assert status == 200, body
        return dict(json.loads(body))

    def _recv(self, deadline: float) -> None:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data


def request(body_length: int, query: str = "", extra: str = "") -> bytes:
    return (f"PUT /{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {body_length}\r\n{extra}\r\n").encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_large_body_is_taken_over_and_arrives_whole(server: Server) -> None:
    with Connection(server) as conn:
        conn.send(request(len(BODY)) + BODY)
        result = conn.result()
    assert result == {"offered": True, "taken": True, "length": len(BODY), "sha256": digest(BODY), "error": None}


@pytest.mark.parametrize("length", [0, 1000, SOCKET_BODY_MIN - 1])
def test_a_small_body_is_not_offered(server: Server, length: int) -> None:
    with Connection(server) as conn:
        conn.send(request(length) + BODY[:length])
        result = conn.result()
    assert (result["offered"], result["taken"], result["sha256"]) == (False, False, digest(BODY[:length]))


def test_a_chunked_body_is_not_offered(server: Server) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (100_000, BODY[i : i + 100_000]) for i in range(0, 1_000_000, 100_000))
    with Connection(server) as conn:
        conn.send(b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        result = conn.result()
    assert (result["offered"], result["taken"], result["sha256"]) == (False, False, digest(BODY[:1_000_000]))


def test_keep_alive_requests_after_a_taken_over_body(server: Server) -> None:
    with Connection(server) as conn:
        for length in (len(BODY), 3 * MiB, 1000):
            conn.send(request(length) + BODY[:length])
            result = conn.result()
            assert (result["length"], result["sha256"]) == (length, digest(BODY[:length]))


def test_a_request_pipelined_behind_the_body_is_left_to_the_server(server: Server) -> None:
    """The body and the next request go out in one stream; reading the body from the socket
    must stop exactly at its end."""
    second = BODY[-2 * MiB :]
    with Connection(server) as conn:
        conn.send(request(len(BODY)) + BODY + request(len(second), "?second") + second, piece=1 << 30)
        first_result, second_result = conn.result(), conn.result()
    assert (first_result["taken"], first_result["sha256"]) == (True, digest(BODY))
    assert (second_result["length"], second_result["sha256"]) == (len(second), digest(second))


def test_the_unread_rest_of_a_body_is_dropped_and_the_connection_goes_on(server: Server) -> None:
    """An app that stops reading (an interrupted upload) answers at once; the rest of the body
    that follows is skipped, and the next request on the connection is read correctly."""
    with Connection(server) as conn:
        sent = BLOCK_SIZE + MiB
        conn.send(request(len(BODY), "?read=1") + BODY[:sent])
        result = conn.result()
        assert result["taken"] is True and result["length"] <= BLOCK_SIZE
        conn.send(BODY[sent:] + request(4 * MiB) + BODY[: 4 * MiB])
        after = conn.result()
    assert (after["length"], after["sha256"]) == (4 * MiB, digest(BODY[: 4 * MiB]))


def test_a_client_that_leaves_mid_body_is_a_connection_reset(server: Server) -> None:
    with Connection(server) as conn:
        conn.send(request(len(BODY)) + BODY[: 3 * MiB])
        conn.sock.shutdown(socket.SHUT_WR)  # no more body: the server reads the end of the stream
        result = conn.result()
    assert result["taken"] is True and result["error"] == "ERR_CONNECTION_RESET"
    assert result["length"] == 3 * MiB  # everything that came was read
    with Connection(server) as conn:  # the server goes on
        conn.send(request(MiB) + BODY[:MiB])
        assert conn.result()["sha256"] == digest(BODY[:MiB])


def test_expect_100_continue_then_a_taken_over_body(server: Server) -> None:
    with Connection(server) as conn:
        conn.send(request(len(BODY), extra="Expect: 100-continue\r\n"))
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in conn.buffer:
            conn._recv(deadline)
        assert conn.buffer.startswith(b"HTTP/1.1 100 ")
        conn.buffer = conn.buffer.split(b"\r\n\r\n", 1)[1]
        conn.send(BODY)
        result = conn.result()
    assert (result["taken"], result["sha256"]) == (True, digest(BODY))


def test_a_trickled_body_arrives_whole(server: Server) -> None:
    """Pauses longer than the reader's 0.1 s hand-over: part-filled blocks go out as views of
    their bytes and the block is filled again; the bytes must still arrive in order."""
    pieces = [BODY[i : i + 300_000] for i in range(0, 1_500_000, 300_000)]
    with Connection(server) as conn:
        conn.send(request(1_500_000))
        for piece in pieces:
            conn.send(piece)
            time.sleep(0.15)  # the scenario: a client with pauses, not a wait for the server
        result = conn.result()
    assert (result["taken"], result["length"], result["sha256"]) == (True, 1_500_000, digest(BODY[:1_500_000]))
