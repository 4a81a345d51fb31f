"""Stopping a server in the middle of a client's upload and starting it again.

Used by the client tests that must survive a server restart (tuspy retries,
the mobile-style raw client). The restarted server uses the same upload
directory and the same port, so the client's upload URL stays valid.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from conftest import TusServer

RESTART_TIMEOUT = 15.0
EVENT_TIMEOUT = 30.0


def restart_on_same_port(make_server: Callable[..., TusServer], old: TusServer) -> TusServer:
    """Start a server on `old`'s port and directory, retrying the bind for a bounded time
    (the port could still be held for a moment after the old process exited)."""
    deadline = time.monotonic() + RESTART_TIMEOUT
    while True:
        try:
            return make_server(*old.args, "-port", str(old.port), upload_dir=old.upload_dir)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # bounded retry of the bind, not synchronisation


class Restarter(threading.Thread):
    """Once `trigger` is set: SIGTERM the server (waiting for it to exit), set `stopped`,
    start it again on the same port, set `restarted`."""

    def __init__(self, make_server: Callable[..., TusServer], server: TusServer) -> None:
        super().__init__(daemon=True)
        self.make_server = make_server
        self.server = server
        self.trigger = threading.Event()
        self.stopped = threading.Event()
        self.restarted = threading.Event()
        self.new_server: TusServer | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if not self.trigger.wait(EVENT_TIMEOUT):
                raise TimeoutError("the upload never reached the restart point")
            self.server.stop(signal.SIGTERM)
            self.stopped.set()
            self.new_server = restart_on_same_port(self.make_server, self.server)
        except BaseException as error:  # reported by finish()
            self.error = error
        finally:
            self.stopped.set()
            self.restarted.set()

    def finish(self) -> TusServer:
        """Join the thread; the restarted server (or the error that stopped it)."""
        self.join(EVENT_TIMEOUT)
        assert not self.is_alive(), "restart thread did not finish"
        if self.error is not None:
            raise self.error
        assert self.new_server is not None
        return self.new_server
