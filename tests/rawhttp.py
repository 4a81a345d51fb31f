"""A raw HTTP/1.1 request over a socket, for tests that must control exactly
when body bytes go out (stuck, cut or trickled bodies)."""

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
