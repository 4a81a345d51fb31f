"""A real redis-server on 127.0.0.1 for tests: no persistence, a free port, bounded start and stop.

It can be stopped and started again on the same port (an outage and a restart)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from conftest import free_port, stop_process

REDIS_SERVER = "/usr/bin/redis-server"  # CI installs it (Makefile system-deps): no skip if missing
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.port = free_port()
        self.log_path = work_dir / "redis-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on self.port; returns once it answers PING."""
        assert self.process is None, "already running"
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        # Nothing written (no RDB snapshots, no AOF), and --dir keeps anything else out of the cwd.
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.work_dir)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log_path.read_text()}")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        stop_process(process, timeout=STOP_TIMEOUT)
