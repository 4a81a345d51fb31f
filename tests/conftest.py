"""Fixtures: a real tusd-py process on 127.0.0.1 and an HTTP client for it."""

from __future__ import annotations

import hashlib
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest

TUS = {"Tus-Resumable": "1.0.0"}
START_TIMEOUT = 15.0


@dataclass
class TusServer:
    process: subprocess.Popen[bytes]
    url: str  # the creation URL, e.g. http://127.0.0.1:PORT/files/
    upload_dir: Path
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.url.split("/files/")[0] if "/files/" in self.url else self.url.rstrip("/")

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)
        if self.process.stdout is not None:
            self.process.stdout.close()


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send `sig` to a process we started and wait for it, killing it if it takes longer than `timeout`."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def start_server(upload_dir: Path, *args: str) -> TusServer:
    """Start `python -m tusd_py -port 0 ...` and wait (bounded) for its URL line."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    log_path = upload_dir.parent / f"{upload_dir.name}-server.log"
    log_file = open(log_path, "ab")
    command = [
        sys.executable,
        "-m",
        "tusd_py",
        "-host",
        "127.0.0.1",
        "-port",
        "0",
        "-upload-dir",
        str(upload_dir),
        *args,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log_file, bufsize=0, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    log_file.close()
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT
    with selector:
        url = _read_url(process, selector, deadline)
    if url is not None:
        return TusServer(process, url, upload_dir, log_path, list(args))
    process.kill()
    process.wait(timeout=10)
    process.stdout.close()
    raise RuntimeError(f"server did not start\n{log_path.read_text(errors='replace')}")


def _read_url(process: subprocess.Popen[bytes], selector: selectors.BaseSelector, deadline: float) -> str | None:
    assert process.stdout is not None
    while time.monotonic() < deadline:
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = process.stdout.readline()
        if not line:
            break
        if b"serving at " in line:
            return line.decode().split("serving at ", 1)[1].strip()
    return None


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    """One server shared by tests that need only the defaults."""
    srv = start_server(tmp_path_factory.mktemp("shared") / "uploads")
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., TusServer]]:
    """Start a server with extra flags; stopped when the test ends."""
    started: list[TusServer] = []

    def make(*args: str, upload_dir: Path | None = None) -> TusServer:
        srv = start_server(upload_dir or tmp_path / f"uploads{len(started)}", *args)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as c:
        yield c


def create(client: httpx.Client, server: TusServer, length: int | None, **headers: str) -> str:
    """Create an upload (deferred when length is None) and return its URL."""
    h = {**TUS, **headers}
    if length is None:
        h["Upload-Defer-Length"] = "1"
    else:
        h["Upload-Length"] = str(length)
    response = client.post(server.url, headers=h)
    assert response.status_code == 201, response.text
    return response.headers["location"]


def patch(client: httpx.Client, url: str, offset: int, data: bytes, **headers: str) -> httpx.Response:
    h = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **headers}
    return client.patch(url, content=data, headers=h)


def head(client: httpx.Client, url: str) -> httpx.Response:
    return client.head(url, headers=TUS)


class StreamedBody:
    """`size` pseudo-random bytes sent as a generator, one 1 MiB block at a time (every block
    differs), so a large upload is never held in the test's memory; `sha256` has seen them."""

    def __init__(self, size: int, block_size: int = 1 << 20) -> None:
        self.size = size
        self.block_size = block_size
        self.sha256 = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        base = random.Random(3).randbytes(self.block_size)
        for index, start in enumerate(range(0, self.size, self.block_size)):
            block = (index.to_bytes(8, "big") + base[8:])[: min(self.block_size, self.size - start)]
            self.sha256.update(block)
            yield block


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for servers we start ourselves)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status_kib(pid: int) -> dict[str, int]:
    """A process's current and peak resident memory (VmRSS, VmHWM) in KiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def run_bounded(scenario: Callable[[], Awaitable[None]], seconds: float) -> None:
    """Run an async test scenario on a fresh event loop, failing it after `seconds`."""

    async def bounded() -> None:
        with anyio.fail_after(seconds):
            await scenario()

    anyio.run(bounded)
