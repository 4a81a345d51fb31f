"""`-workers 2`: several processes share one port and one upload directory, each
accepting on a socket of its own (SO_REUSEPORT; supervisor.py).

Uploads split over many connections land on both workers and still end
byte-identical; the file locker lets a request on one worker stop a stuck
PATCH held by the other (and by the same one).

Which worker serves a connection is the kernel's choice. The tests find out
afterwards, through /proc: the worker whose fd table holds the server end of
the (still open) connection. So a test can ask for "a new connection served
by worker X" by opening connections until one lands there.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from threading import Barrier
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server
from worker_procs import listening_sockets, server_end, serving_pid, worker_pids

KiB = 1 << 10
MiB = 1 << 20
TIMEOUT = 10.0
RELEASE_WITHIN = 3.0  # seconds a new request may wait for a stuck one to let go
UPLOADS = 50
PATCHES_PER_UPLOAD = 4
OCTET = {"Content-Type": "application/offset+octet-stream"}


# --- processes, sockets and locks, seen through /proc -----------------------------------------


def written_bytes(pid: int) -> int:
    """Bytes the process has passed to write()-like calls (sockets included)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar for {pid}")


def unread_bytes(server: TusServer, sock: socket.socket) -> int:
    """Bytes we sent that the server process has not read from its socket yet."""
    return int(server_end(server, sock)[4].split(":")[1], 16)


def flock_holder(lock_file: Path) -> int | None:
    """The pid holding a flock on `lock_file`, from /proc/locks."""
    try:
        inode = lock_file.stat().st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (blocked waiters have "->")
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        if int(fields[5].split(":")[2]) == inode:
            return int(fields[4])
    return None


def wait_for_lock_holder(lock_file: Path) -> int | None:
    deadline = time.monotonic() + TIMEOUT
    while (holder := flock_holder(lock_file)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return holder


# --- raw HTTP/1.1 connections ---------------------------------------------------------------


class Raw:
    def __init__(self, server: TusServer, timeout: float = TIMEOUT) -> None:
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_request_head(self, method: str, url: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{self.server.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def read_response(self, method: str = "") -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head_bytes, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
        length = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._recv()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(" ")[1]), headers, body

    def request(self, method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.send_request_head(method, url, headers)
        return self.read_response(method)

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data


def connection_to(server: TusServer, pids: list[int], wanted: int) -> Raw:
    """A NEW keep-alive connection that the kernel happened to give to worker `wanted`."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        conn = Raw(server)
        try:
            status, _, _ = conn.request("OPTIONS", server.url, {})
            assert status == 200
            if serving_pid(server, conn.sock, pids) == wanted:
                return conn
        except BaseException:
            conn.close()
            raise
        conn.close()
    raise AssertionError(f"no connection reached worker {wanted} within {TIMEOUT}s")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TusServer, list[int]]]:
    """One `-workers 2` server for this module, both of whose workers serve requests already.

    Waiting for both matters: a worker that starts late runs its first
    expiration sweep over uploads a test has already created.
    """
    server = start_server(tmp_path_factory.mktemp("workers") / "uploads", "-workers", "2")
    try:
        yield server, wait_until_both_serve(server)
    finally:
        server.stop()


def wait_until_both_serve(server: TusServer) -> list[int]:
    deadline = time.monotonic() + TIMEOUT
    while len(pids := worker_pids(server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids) == 2, f"workers: {pids}"
    served: set[int] = set()
    with ExitStack() as open_connections:  # kept open so the next one may go elsewhere
        while served != set(pids) and time.monotonic() < deadline:
            conn = open_connections.enter_context(Raw(server))
            assert conn.request("OPTIONS", server.url, {})[0] == 200
            served.add(serving_pid(server, conn.sock, pids))
    assert served == set(pids), f"only {served} of {pids} answered"
    return pids


def start_stuck_patch(server: TusServer, url: str, data: bytes, offset: int, sent: int) -> Raw:
    """A PATCH that announces the whole rest, sends `sent` bytes and then goes silent."""
    stuck = Raw(server)
    headers = {**TUS, **OCTET, "Upload-Offset": str(offset), "Content-Length": str(len(data) - offset)}
    stuck.send_request_head("PATCH", url, headers)
    stuck.sock.sendall(data[offset : offset + sent])
    return stuck


def head_within(conn: Raw, url: str, seconds: float) -> tuple[int, dict[str, str], bytes]:
    """HEAD on `conn`, answered within `seconds` (the stuck request must let go by then)."""
    conn.sock.settimeout(seconds)
    started = time.monotonic()
    try:
        response = conn.request("HEAD", url, TUS)
    except TimeoutError:
        raise AssertionError(f"HEAD got no answer within {seconds}s: the stuck PATCH kept the lock") from None
    finally:
        conn.sock.settimeout(TIMEOUT)
    assert time.monotonic() - started < seconds
    return response


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


# --- tests ------------------------------------------------------------------------------------------


def test_two_worker_processes_run_under_the_supervisor(two_workers: tuple[TusServer, list[int]]) -> None:
    server, pids = two_workers
    assert len(set(pids)) == 2
    assert server.process.pid not in pids
    for pid in pids:
        assert f"PPid:\t{server.process.pid}\n" in Path(f"/proc/{pid}/status").read_text()


def upload_in_pieces(server: TusServer, index: int, start: Barrier) -> tuple[str, str, int]:
    """One upload of distinct random bytes, each PATCH on a NEW connection so
    consecutive requests of one upload may land on different workers."""
    rng = random.Random(1000 + index)
    data = rng.randbytes(rng.randrange(300 * KiB, 2 * MiB))
    bounds = [0, *sorted(rng.sample(range(1, len(data)), PATCHES_PER_UPLOAD - 1)), len(data)]
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=30.0, limits=no_keepalive) as client:
        url = create(client, server, len(data))
        start.wait(timeout=TIMEOUT)
        for begin, end in zip(bounds, bounds[1:], strict=False):
            response = patch(client, url, begin, data[begin:end])
            assert response.status_code == 204, response.text
            assert response.headers["upload-offset"] == str(end)
        final = head(client, url)
    assert final.status_code == 200
    assert final.headers["upload-offset"] == final.headers["upload-length"] == str(len(data))
    return url, hashlib.sha256(data).hexdigest(), len(data)


def test_concurrent_uploads_split_over_connections_end_byte_identical(
    two_workers: tuple[TusServer, list[int]],
) -> None:
    # T-CORE-16/T-CORE-20 under load: 50 uploads at once, 4 PATCHes each, every request on a
    # fresh connection, so consecutive PATCHes of one upload run on different workers.
    server, pids = two_workers
    before = {pid: written_bytes(pid) for pid in pids}
    start = Barrier(UPLOADS)
    with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
        results = list(pool.map(lambda i: upload_in_pieces(server, i, start), range(UPLOADS)))
    assert len({url for url, _, _ in results}) == UPLOADS
    total = 0
    for url, digest, length in results:
        path = server.upload_dir / upload_id(url)
        assert path.stat().st_size == length
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        total += length
    # Both workers did real work: each wrote a good share of the uploaded bytes.
    for pid in pids:
        assert written_bytes(pid) - before[pid] > total // 20, "one worker served (almost) nothing"
    assert sorted(worker_pids(server)) == sorted(pids)  # nobody crashed and got replaced
    # Lock files live as long as their upload; stop requests and rollback markers must be gone.
    leftovers = [p.name for p in server.upload_dir.iterdir() if p.suffix in (".stop", ".rollback")]
    assert leftovers == []


@pytest.mark.parametrize("head_on", ["other worker", "same worker", "other worker", "same worker", "other worker"])
def test_head_on_a_new_connection_interrupts_a_stuck_patch(
    two_workers: tuple[TusServer, list[int]], head_on: str
) -> None:
    # A-19 / I-CONC-4, lock release across processes (tusd: 400 ERR_UPLOAD_INTERRUPTED): a new
    # request for an upload stops the request that holds it, whichever worker each is on.
    server, pids = two_workers
    rng = random.Random(head_on)
    data = rng.randbytes(4 * MiB)
    with httpx.Client(timeout=30.0) as client:
        url = create(client, server, len(data))
        assert patch(client, url, 0, data[:1000]).status_code == 204
    lock_file = server.upload_dir / f"{upload_id(url)}.lock"
    data_path = server.upload_dir / upload_id(url)

    sent = rng.randrange(1, 64) * KiB
    with start_stuck_patch(server, url, data, 1000, sent) as stuck:
        holder = wait_for_lock_holder(lock_file)
        assert holder in pids, "the stuck PATCH never took the upload's lock"
        target = holder if head_on == "same worker" else next(pid for pid in pids if pid != holder)
        with connection_to(server, pids, target) as probe:
            status, headers, _ = head_within(probe, url, RELEASE_WITHIN)
        assert status == 200

        status, _, body = stuck.read_response()
        assert status == 400, body
        assert body.startswith(b"ERR_UPLOAD_INTERRUPTED"), body

    # The interrupted request keeps what reached the server (T-CORE-23) ...
    offset = int(headers["upload-offset"])
    assert 1000 <= offset <= 1000 + sent
    assert offset == data_path.stat().st_size
    assert data_path.read_bytes() == data[:offset]
    # ... and the upload goes on, from either worker.
    with httpx.Client(timeout=30.0) as client:
        response = patch(client, url, offset, data[offset:])
        assert response.status_code == 204, response.text
    assert hashlib.sha256(data_path.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert flock_holder(lock_file) is None  # released; the file itself lives as long as the upload
    assert not (server.upload_dir / f"{upload_id(url)}.stop").exists()


def test_head_interrupts_a_stuck_patch_on_the_other_worker_while_a_non_interrupting_waiter_queues(
    two_workers: tuple[TusServer, list[int]],
) -> None:
    # A-19 / I-CONC-4 again, with a request that waits WITHOUT interrupting already queued on the
    # HEAD's worker: creating a final upload from the partial. (The expiration sweeper
    # waits the same way, e.g. the first sweep of a worker that starts late.)
    server, pids = two_workers
    data = random.Random(5).randbytes(1 * MiB)
    with httpx.Client(timeout=30.0) as client:
        url = create(client, server, len(data), **{"Upload-Concat": "partial"})
    lock_file = server.upload_dir / f"{upload_id(url)}.lock"

    with start_stuck_patch(server, url, data, 0, 32 * KiB) as stuck:
        holder = wait_for_lock_holder(lock_file)
        assert holder in pids, "the stuck PATCH never took the upload's lock"
        other = next(pid for pid in pids if pid != holder)
        with connection_to(server, pids, other) as concat, connection_to(server, pids, other) as probe:
            concat.sock.settimeout(RELEASE_WITHIN + 1)
            concat.send_request_head("POST", server.url, {**TUS, "Upload-Concat": f"final;{urlsplit(url).path}"})
            # Ordering: once the worker has read the POST, its handler runs before the
            # worker answers anything that arrives later on another connection.
            deadline = time.monotonic() + TIMEOUT
            while unread_bytes(server, concat.sock) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert probe.request("OPTIONS", server.url, {})[0] == 200

            status, headers, _ = head_within(probe, url, RELEASE_WITHIN)
            assert status == 200

            status, _, body = stuck.read_response()
            assert status == 400, body
            assert body.startswith(b"ERR_UPLOAD_INTERRUPTED"), body
            # The final upload got the partial's lock too, and found it unfinished.
            status, _, body = concat.read_response()
            assert status == 400, body
            assert body.startswith(b"ERR_UPLOAD_NOT_FINISHED"), body
    assert int(headers["upload-offset"]) == (server.upload_dir / upload_id(url)).stat().st_size


# --- one socket per worker (SO_REUSEPORT) ------------------------------------------------------


def test_a_head_on_one_worker_sees_every_patch_made_on_the_other(two_workers: tuple[TusServer, list[int]]) -> None:
    # Each worker keeps its HEAD answers while the upload's lock generation holds
    # (spec_notes/serving.md): a PATCH on the other worker must change what it answers.
    server, pids = two_workers
    with httpx.Client(timeout=TIMEOUT) as client:
        url = create(client, server, 60)
    with connection_to(server, pids, pids[0]) as first, connection_to(server, pids, pids[1]) as second:
        offset = 0
        for i in range(20):
            patcher, other = (first, second) if i % 2 == 0 else (second, first)
            for conn in (other, patcher):  # both keep an answer for this offset
                status, headers, _ = conn.request("HEAD", url, TUS)
                assert status == 200 and headers["upload-offset"] == str(offset), (i, headers)
            patcher.send_request_head(
                "PATCH", url, {**TUS, **OCTET, "Upload-Offset": str(offset), "Content-Length": "3"}
            )
            patcher.sock.sendall(b"abc")
            status, headers, _ = patcher.read_response("PATCH")
            assert status == 204, (i, status)
            offset += 3
            for conn in (other, patcher):
                status, headers, _ = conn.request("HEAD", url, TUS)
                assert status == 200 and headers["upload-offset"] == str(offset), (i, headers)


def test_a_creation_answered_at_once_is_seen_and_removed_across_workers(
    two_workers: tuple[TusServer, list[int]],
) -> None:
    # A creation whose whole body comes with its headers is stored complete by the worker
    # that got it, without a lock (spec_notes/serving.md); its lock file is made for the
    # others. Each worker answers HEADs for it, the other one deletes it, and then neither
    # knows it.
    server, pids = two_workers
    body = b"at once" * 10
    for creator in range(2):
        with (
            connection_to(server, pids, pids[creator]) as first,
            connection_to(server, pids, pids[1 - creator]) as other,
        ):
            headers = {**TUS, **OCTET, "Upload-Length": str(len(body)), "Content-Length": str(len(body))}
            lines = [f"POST {urlsplit(server.url).path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            first.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)  # one write
            status, created, _ = first.read_response("POST")
            assert status == 201 and created["upload-offset"] == str(len(body))
            url = created["location"]
            for _ in range(2):  # the second HEAD on each may come from a kept answer
                for conn in (other, first):
                    status, described, _ = conn.request("HEAD", url, TUS)
                    assert status == 200 and described["upload-offset"] == str(len(body)), described
            assert other.request("DELETE", url, TUS)[0] == 204
            for conn in (first, other):
                assert conn.request("HEAD", url, TUS)[0] == 404


def test_each_worker_accepts_on_its_own_socket(two_workers: tuple[TusServer, list[int]]) -> None:
    server, pids = two_workers
    mine = {pid: listening_sockets(pid, server.port) for pid in pids}
    assert all(len(sockets) == 1 for sockets in mine.values()), mine
    assert len(set.union(*mine.values())) == 2, mine
    # The supervisor keeps both, so a dead worker's queue waits for its replacement.
    assert listening_sockets(server.process.pid, server.port) == set.union(*mine.values())


def test_new_connections_spread_over_the_workers(two_workers: tuple[TusServer, list[int]]) -> None:
    # The kernel hashes each connection's addresses to a socket: of 32 connections, each
    # worker gets some (all on one would be a 1 in 2**31 chance).
    server, pids = two_workers
    served: dict[int, int] = dict.fromkeys(pids, 0)
    with ExitStack() as open_connections:
        for _ in range(32):
            conn = open_connections.enter_context(Raw(server))
            assert conn.request("OPTIONS", server.url, {})[0] == 200
            served[serving_pid(server, conn.sock, pids)] += 1
    assert min(served.values()) >= 4, served


def test_a_second_instance_on_the_same_port_is_refused(
    two_workers: tuple[TusServer, list[int]], tmp_path: Path
) -> None:
    # Joining a SO_REUSEPORT group would succeed and quietly take half the connections.
    server, _ = two_workers
    command = [sys.executable, "-m", "tusd_py", "-host", "127.0.0.1", "-port", str(server.port)]
    result = subprocess.run(
        [*command, "-upload-dir", str(tmp_path), "-workers", "2"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1, result.stderr
    assert "cannot listen" in result.stderr


def test_a_worker_that_dies_is_replaced_on_its_socket(tmp_path: Path) -> None:
    server = start_server(tmp_path / "uploads", "-workers", "2")
    try:
        pids = wait_until_both_serve(server)
        victim = pids[0]
        victims_socket = listening_sockets(victim, server.port)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while victim in (now := worker_pids(server)) or len(now) < 2:
            assert time.monotonic() < deadline, f"no replacement for {victim}: {now}"
            time.sleep(0.05)
        replacement = next(pid for pid in now if pid not in pids)
        while listening_sockets(replacement, server.port) != victims_socket:
            assert time.monotonic() < deadline, "the replacement did not take the dead worker's socket"
            time.sleep(0.05)
        assert sorted(wait_until_both_serve(server)) == sorted(now)
    finally:
        server.stop()


def test_a_dead_workers_open_requests_leave_the_metrics(tmp_path: Path) -> None:
    # tusd_connections_open counts live processes only (prometheus-client's "livesum"): a
    # worker killed inside a request must not stay counted as having it open.
    server = start_server(tmp_path / "uploads", "-workers", "2")
    try:
        pids = wait_until_both_serve(server)
        data = random.Random(7).randbytes(1 * MiB)
        with httpx.Client(timeout=TIMEOUT) as client:
            url = create(client, server, len(data))
        with start_stuck_patch(server, url, data, 0, 32 * KiB):
            holder = wait_for_lock_holder(server.upload_dir / f"{upload_id(url)}.lock")
            assert holder in pids
            os.kill(holder, signal.SIGKILL)
            deadline = time.monotonic() + TIMEOUT
            while holder in (now := worker_pids(server)) or len(now) < 2:
                assert time.monotonic() < deadline, f"no replacement for {holder}: {now}"
                time.sleep(0.05)
        wait_until_both_serve(server)
        with httpx.Client(timeout=TIMEOUT) as client:
            metrics = client.get(server.origin + "/metrics").text
        open_requests = [line for line in metrics.splitlines() if line.startswith("tusd_connections_open ")]
        assert open_requests == ["tusd_connections_open 0.0"], open_requests
    finally:
        server.stop()
