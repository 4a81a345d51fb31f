"""Raw HTTP/1.1 over a socket, for tests that must control exactly when bytes go out: a
request whose body bytes go out when the test says (stuck, cut or trickled bodies), and
requests sent together in one write (pipelined, or a body in the same read as its headers)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from conftest import TusServer

TIMEOUT = 15.0


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lowercased names
    body: bytes


class RawRequest:
    """One HTTP/1.1 request over a raw socket: headers, then body bytes when the test says."""

    def __init__(self, server: TusServer, method: str, url: str, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        lines = [f"{method} {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._buffer = b""

    def __enter__(self) -> RawRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self, deadline: float | None = None) -> RawResponse:
        """The response, which must arrive before `deadline` (time.monotonic(); default TIMEOUT from now)."""
        deadline = time.monotonic() + TIMEOUT if deadline is None else deadline
        while b"\r\n\r\n" not in self._buffer:
            self._recv(deadline)
        head_bytes, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._recv(deadline)
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return RawResponse(int(status_line.split(" ")[1]), headers, body)

    def _recv(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no response in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self._buffer += data


def read_bodiless(sock: socket.socket, count: int, timeout: float = TIMEOUT) -> list[bytes]:
    """`count` responses without bodies (status line and headers each), in order."""
    deadline = time.monotonic() + timeout
    buffer = b""
    while buffer.count(b"\r\n\r\n") < count:
        assert time.monotonic() < deadline, "responses did not arrive in time"
        chunk = sock.recv(65536)
        assert chunk, "connection closed before every response came"
        buffer += chunk
    return buffer.split(b"\r\n\r\n")[:count]


def exchange(server: TusServer, requests: list[bytes], count: int) -> list[bytes]:
    """Send every request in one write (pipelined) and read `count` responses without bodies."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(requests))
        return read_bodiless(sock, count)


def send_until_closed(server: TusServer, request: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send one request and read everything until the server closes the connection."""
    deadline = time.monotonic() + timeout
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            assert time.monotonic() < deadline, "the server did not close in time"
            received += chunk
    return received


def parsed(lines: bytes) -> dict[bytes, bytes]:
    """Header lines of an answer given inside the protocol (asgi.header_lines) as a dict."""
    assert lines.endswith(b"\r\n")
    return dict(line.split(b": ", 1) for line in lines[:-2].split(b"\r\n"))  # type: ignore[misc]
