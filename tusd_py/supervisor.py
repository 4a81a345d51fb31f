"""`-workers N`: N worker processes, each accepting on a socket of its own.

uvicorn's supervisor gives every worker the same listening socket. Each new
connection then wakes them all and the first to call accept takes it, often a
whole burst at once: with `-workers 2`, W4's 64 connections could land 60 on
one worker, and its HEADs/s varied from 9,000 to 15,000 between runs. Here every
worker has its own socket on the same port (SO_REUSEPORT), and the kernel
spreads connections over them by a hash of their addresses.

The supervisor keeps every socket open, so connections queued on a worker that
dies wait for its replacement instead of being refused. A Unix socket cannot
be shared that way: all workers accept from the one socket.

Workers are spawned (not forked) and build their app from the environment
(`app.app_from_environment`). SIGINT and SIGTERM stop the workers gracefully
and then the supervisor; a worker that dies is replaced, unless it failed
before serving (a broken app would fail again), and its open requests leave
the metrics. uvicorn's SIGHUP, SIGTTIN and SIGTTOU controls are not offered
(tusd has none).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing.context import SpawnProcess

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from .metrics import forget_process

logger = logging.getLogger("uvicorn.error")
CHECK_EVERY = 0.5  # seconds between looks at the workers

multiprocessing.allow_connection_pickling()  # sockets travel to spawned workers
_spawn = multiprocessing.get_context("spawn")


def bind(family: socket.AddressFamily, address: tuple[str, int], shared_port: bool) -> socket.socket:
    """A listening TCP socket; with `shared_port`, one of a SO_REUSEPORT group."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def refuse_taken_port(family: socket.AddressFamily, address: tuple[str, int]) -> None:
    """Raise OSError (address in use) if something listens on `address` already.

    Joining a SO_REUSEPORT group succeeds while the group exists, so a second
    instance started by mistake on the same port would silently take half of
    its connections: a plain bind first fails as it would without workers."""
    if address[1] == 0:
        return  # any free port
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def shares_ports() -> bool:
    """Whether this system spreads connections over a SO_REUSEPORT group (Linux does)."""
    return hasattr(socket, "SO_REUSEPORT") and os.uname().sysname == "Linux"


def listeners(first: socket.socket, count: int) -> list[socket.socket]:
    """One socket per worker: `first` and count-1 more on its address, or `first`
    for all when it is not part of a port group."""
    grouped = (
        first.family != socket.AF_UNIX and shares_ports() and first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    )
    if not grouped:
        return [first] * count
    address = first.getsockname()[:2]  # the real port, if 0 was asked for
    more = [bind(first.family, address, shared_port=True) for _ in range(count - 1)]
    return [first, *more]


def _work(config: uvicorn.Config, sock: socket.socket) -> None:
    """A worker process: one uvicorn server on its socket."""
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self._config = config
        self._sockets = sockets
        self._workers: list[SpawnProcess] = []
        self._stop = threading.Event()

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda number, frame: self._stop.set())
        self._workers = [self._start(sock) for sock in self._sockets]
        while not self._stop.wait(CHECK_EVERY):
            self._replace_dead()
        for worker in self._workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)  # graceful: uvicorn drains, then exits
        for worker in self._workers:
            worker.join()
        logger.info(f"Stopping parent process [{os.getpid()}]")

    def _start(self, sock: socket.socket) -> SpawnProcess:
        worker = _spawn.Process(target=_work, args=(self._config, sock))
        worker.start()
        return worker

    def _replace_dead(self) -> None:
        for index, worker in enumerate(self._workers):
            if worker.is_alive():
                continue
            worker.join()
            if worker.pid is not None:
                forget_process(worker.pid)
            if worker.exitcode == STARTUP_FAILURE:
                logger.error(f"Worker process [{worker.pid}] failed to start, stopping.")
                self._stop.set()
                return
            logger.warning(f"Worker process [{worker.pid}] died ({worker.exitcode}), starting another")
            self._workers[index] = self._start(self._sockets[index])
