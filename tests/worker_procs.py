"""Worker processes of a `-workers N` server, seen through /proc: which children
are workers, which worker holds a connection, which sockets a process listens on."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from conftest import TusServer


def worker_pids(server: TusServer) -> list[int]:
    """The supervisor's children that run a server (spawned by multiprocessing; its
    resource tracker is a child too, but no worker)."""
    pid = server.process.pid
    workers = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"multiprocessing.spawn" in cmdline:
            workers.append(int(child))
    return workers


def server_end(server: TusServer, sock: socket.socket) -> list[str]:
    """The /proc/net/tcp row of the server end of our connection."""
    local = f"0100007F:{server.port:04X}"
    remote = f"0100007F:{sock.getsockname()[1]:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields
    raise AssertionError("server end of the connection not found")


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def serving_pid(server: TusServer, sock: socket.socket, pids: list[int]) -> int:
    """Which worker holds the server end of our (accepted, still open) connection."""
    inode = server_end(server, sock)[9]
    for pid in pids:
        if inode in socket_inodes(pid):
            return pid
    raise AssertionError(f"no worker holds socket {inode}")


def listening_sockets(pid: int, port: int) -> set[str]:
    """Inodes of the sockets listening on `port` that process `pid` holds."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
            listening.add(fields[9])
    return listening & socket_inodes(pid)
