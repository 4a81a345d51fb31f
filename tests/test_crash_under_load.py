"""Crash safety under load: 100 concurrent uploads, the server SIGKILLed three times.

Every upload declares its whole-file sha256 in metadata (`checksum: sha256 <hex>`);
a third of them also send a per-request `Upload-Checksum` on every PATCH. They mix
chunk sizes (64 KiB to 4 MiB), single-PATCH uploads, creation-with-upload (first
chunk, or the whole file, in the POST) and chunked bodies. Meanwhile the server
(its whole process tree, workers included) is killed with SIGKILL at three moments
drawn from a seeded RNG (shares of the bytes acknowledged so far), and restarted on
the same directory and port.

Clients behave like a resumable client should: after any transport error they HEAD
the upload and resume from its offset (or create again, if a POST got no answer),
with a bounded backoff and an overall deadline.

What must hold:
- no acknowledged byte is ever lost: every HEAD offset >= the last offset a 204/201
  acknowledged (T-CORE-18/20); a checksummed upload never counts bytes of a request
  that did not verify, so its offset sits on a request boundary (T-CHK-5);
- in the end every upload completes byte-identical, HEAD has Repr-Digest sha-256 of the
  file, the `.info` records Digests (whole-file checksum, spec_notes/whole-file-checksum.md);
- nothing is left half-done: no `.rollback` marker.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer
from restarts import restart_on_same_port

KiB = 1 << 10
MiB = 1 << 20
SEED = 20240601
UPLOADS = 100
MIN_SIZE, MAX_SIZE = 256 * KiB, 6 * MiB
CHUNK_SIZES = [64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB]
CHECKSUM_ALGORITHMS = ["md5", "sha1", "sha256", "sha512"]
KILLS = 3
# Kill when this share of all bytes was acknowledged (one window per kill; seeded draw).
KILL_WINDOWS = [(0.08, 0.25), (0.35, 0.55), (0.62, 0.80)]
LATE_STARTERS = 30  # uploads that start while others run, so kills also cut creations
LATE_START_WINDOW = (0.02, 0.5)
MIN_IN_FLIGHT = 10  # uploads that must still be running when a kill happens
DEADLINE = 45.0  # the whole run, kills and restarts included
REQUEST_TIMEOUT = 15.0
MAX_CONSECUTIVE_FAILURES = 40  # per upload; backoff is capped at BACKOFF_CAP
BACKOFF_CAP = 0.4
OCTET = "application/offset+octet-stream"
# A server answer the client retries (after a HEAD) rather than fails on:
# its own earlier PATCH interrupted by the HEAD, or a lock held a bit long.
RETRYABLE = {(400, "ERR_UPLOAD_INTERRUPTED"), (500, "ERR_LOCK_TIMEOUT"), (500, "ERR_READ_TIMEOUT")}


@dataclass
class Upload:
    index: int
    data: bytes
    chunk: int  # PATCHes end at multiples of this
    kind: str  # "patch": POST then PATCHes; "cwu": first chunk in the POST; "post-all": whole file in the POST
    checksum: str | None  # per-request Upload-Checksum algorithm
    chunked: bool  # PATCH bodies with Transfer-Encoding: chunked
    start_at: float = 0.0  # starts once this share of all bytes was acknowledged
    url: str | None = None
    posts: int = 0  # creation requests sent
    acked: int = 0  # the last offset the server acknowledged
    done: bool = False
    sha256: bytes = b""

    @property
    def length(self) -> int:
        return len(self.data)

    def metadata(self) -> str:
        pairs = {"filename": f"file-{self.index}.bin", "checksum": f"sha256 {self.sha256.hex()}"}
        return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


@dataclass
class Figures:
    uploads: int = 0
    bytes: int = 0
    bytes_sent: int = 0  # request bodies attempted: resent ones and ones refused at connect included
    requests: int = 0
    kills: int = 0
    transport_errors: int = 0
    retried_answers: int = 0  # RETRYABLE answers and 409s
    recreated: int = 0  # POSTs sent again because the first got no answer
    losses: list[str] = field(default_factory=list)  # acknowledged bytes missing after a HEAD
    unverified: list[str] = field(default_factory=list)  # checksummed upload off a request boundary


def make_uploads() -> list[Upload]:
    rng = random.Random(SEED)
    uploads = []
    for i in range(UPLOADS):
        data = rng.randbytes(rng.randrange(MIN_SIZE, MAX_SIZE + 1))
        kind = "post-all" if i % 10 == 2 else "cwu" if i % 5 == 1 else "patch"
        single = i % 5 == 0  # one PATCH (resumed with one PATCH for the rest)
        chunk = len(data) if single or kind == "post-all" else rng.choice(CHUNK_SIZES)
        checksum = CHECKSUM_ALGORITHMS[(i // 3) % 4] if i % 3 == 0 else None
        upload = Upload(i, data, chunk, kind, checksum, chunked=i % 7 == 3 and kind == "patch")
        upload.sha256 = hashlib.sha256(data).digest()
        uploads.append(upload)
    for upload in rng.sample(uploads, LATE_STARTERS):
        upload.start_at = rng.uniform(*LATE_START_WINDOW)
    return uploads


def checksum_header(algorithm: str, body: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, body).digest()).decode()}"


async def pieces(body: bytes) -> AsyncIterator[bytes]:
    """An async body: httpx sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), 64 * KiB):
        yield body[start : start + 64 * KiB]


class Run:
    def __init__(self, server: TusServer, uploads: list[Upload], client: httpx.AsyncClient) -> None:
        self.server = server
        self.uploads = uploads
        self.client = client
        self.figures = Figures(uploads=len(uploads), bytes=sum(u.length for u in uploads))

    @property
    def acked_bytes(self) -> int:
        return sum(u.acked for u in self.uploads)

    # --- one upload ---------------------------------------------------------------------

    async def upload(self, upload: Upload) -> None:
        while self.acked_bytes < upload.start_at * self.figures.bytes:  # bounded by run_all's deadline
            await asyncio.sleep(0.005)
        failures = 0
        need_head = False
        while not upload.done:
            try:
                if upload.url is None:
                    await self.create(upload)
                elif need_head:
                    await self.resync(upload)
                    need_head = False
                else:
                    await self.send_next(upload)
                failures = 0
                continue
            except httpx.TransportError:
                self.figures.transport_errors += 1
            except Retry:
                self.figures.retried_answers += 1
            need_head = upload.url is not None
            failures += 1
            assert failures <= MAX_CONSECUTIVE_FAILURES, f"upload {upload.index}: server unreachable for too long"
            await asyncio.sleep(min(BACKOFF_CAP, 0.02 * 2**failures))  # backoff before retrying

    async def create(self, upload: Upload) -> None:
        headers = {**TUS, "Upload-Length": str(upload.length), "Upload-Metadata": upload.metadata()}
        body = b""
        if upload.kind != "patch":
            body = upload.data[: upload.chunk]
            headers["Content-Type"] = OCTET
            if upload.checksum:
                headers["Upload-Checksum"] = checksum_header(upload.checksum, body)
        self.figures.requests += 1
        self.figures.bytes_sent += len(body)
        if upload.posts:
            self.figures.recreated += 1
        upload.posts += 1
        response = await self.client.post(self.server.url, headers=headers, content=body)
        self.expect(upload, response, 201)
        upload.url = response.headers["location"]
        if body:
            offset = int(response.headers["upload-offset"])
            assert offset == len(body), f"upload {upload.index}: POST stored {offset} of {len(body)}"
            self.acknowledge(upload, offset)

    async def send_next(self, upload: Upload) -> None:
        start = upload.acked
        end = min(start - start % upload.chunk + upload.chunk, upload.length)
        body = upload.data[start:end]
        headers = {**TUS, "Upload-Offset": str(start), "Content-Type": OCTET}
        if upload.checksum:
            headers["Upload-Checksum"] = checksum_header(upload.checksum, body)
        self.figures.requests += 1
        self.figures.bytes_sent += len(body)
        assert upload.url is not None
        response = await self.client.patch(
            upload.url, headers=headers, content=pieces(body) if upload.chunked else body
        )
        self.expect(upload, response, 204)
        offset = int(response.headers["upload-offset"])
        assert offset == end, f"upload {upload.index}: PATCH acknowledged {offset}, expected {end}"
        self.acknowledge(upload, offset)

    async def resync(self, upload: Upload) -> None:
        """HEAD after a failure: nothing acknowledged may be missing; resume from the offset."""
        assert upload.url is not None
        self.figures.requests += 1
        response = await self.client.head(upload.url, headers=TUS)
        self.expect(upload, response, 200)
        offset = int(response.headers["upload-offset"])
        assert response.headers["upload-length"] == str(upload.length)
        if offset < upload.acked:
            self.figures.losses.append(f"upload {upload.index}: HEAD offset {offset} < acknowledged {upload.acked}")
        if upload.checksum and offset % upload.chunk and offset != upload.length:
            self.figures.unverified.append(f"upload {upload.index} ({upload.checksum}): offset {offset}")
        upload.acked = offset
        upload.done = offset == upload.length

    def acknowledge(self, upload: Upload, offset: int) -> None:
        upload.acked = offset
        upload.done = offset == upload.length

    def expect(self, upload: Upload, response: httpx.Response, status: int) -> None:
        if response.status_code == status:
            return
        code = response.text.split(":", 1)[0] if response.text else ""
        if response.status_code == 409 or (response.status_code, code) in RETRYABLE:
            raise Retry()
        raise AssertionError(f"upload {upload.index} ({upload.kind}): {response.status_code} {response.text!r}")

    # --- the crashes --------------------------------------------------------------------

    async def crash_and_restart(self, make_server: Callable[..., TusServer], thresholds: list[float]) -> None:
        deadline = time.monotonic() + DEADLINE
        for threshold in thresholds:
            goal = int(threshold * self.figures.bytes)
            while self.acked_bytes < goal:  # bounded polling: the deadline below
                assert time.monotonic() < deadline, f"only {self.acked_bytes} of {goal} bytes before the kill"
                await asyncio.sleep(0.005)
            in_flight = sum(not u.done for u in self.uploads)
            assert in_flight >= MIN_IN_FLIGHT, f"only {in_flight} uploads left to kill under"
            kill_tree(self.server)
            self.figures.kills += 1
            self.server = await asyncio.to_thread(restart_on_same_port, make_server, self.server)


class Retry(Exception):
    """The server answered something the client recovers from by HEAD and retry."""


def descendants(pid: int) -> list[int]:
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status or "\nState:\tX" in status


def metrics_dirs(pids: list[int]) -> set[str]:
    """The prometheus multiprocess directories the workers were started with."""
    found = set()
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for entry in environ:
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                found.add(entry.split(b"=", 1)[1].decode())
    return found


def kill_tree(server: TusServer) -> None:
    """SIGKILL the server and every process it started (workers), all at once: a crash.
    A killed supervisor cannot remove its metrics directory; we do (see the report)."""
    pids = descendants(server.process.pid)
    litter = metrics_dirs(pids)
    server.process.kill()  # first, so the supervisor cannot respawn a worker
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in pids):  # orphaned workers: reaped by init, bounded wait
        assert time.monotonic() < deadline, "a killed worker did not die"
        time.sleep(0.01)
    for directory in litter:
        shutil.rmtree(directory, ignore_errors=True)


async def run_all(run: Run, make_server: Callable[..., TusServer], thresholds: list[float]) -> None:
    uploads = [asyncio.create_task(run.upload(u)) for u in run.uploads]
    chaos = asyncio.create_task(run.crash_and_restart(make_server, thresholds))
    try:
        async with asyncio.timeout(DEADLINE):
            await chaos
            await asyncio.gather(*uploads)
    finally:
        for task in [*uploads, chaos]:
            task.cancel()
        await asyncio.gather(*uploads, chaos, return_exceptions=True)


def verify(server: TusServer, uploads: list[Upload]) -> None:
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for upload in uploads:
            assert upload.url is not None
            response = client.head(upload.url, headers=TUS)
            what = f"upload {upload.index} ({upload.kind}, chunk {upload.chunk}, checksum {upload.checksum})"
            assert response.status_code == 200, what
            assert response.headers["upload-offset"] == response.headers["upload-length"] == str(upload.length), what
            sha256_b64 = base64.b64encode(upload.sha256).decode()
            assert f"sha-256=:{sha256_b64}:" in response.headers.get("repr-digest", ""), what
            upload_id = upload.url.rsplit("/", 1)[1]
            with open(server.upload_dir / upload_id, "rb") as f:
                assert hashlib.sha256(f.read()).digest() == upload.sha256, f"{what}: stored bytes differ"
            info = json.loads((server.upload_dir / f"{upload_id}.info").read_bytes())
            assert info["Offset"] == info["Size"] == upload.length, what
            assert info["Digests"]["sha256"] == sha256_b64, what
            assert info["DeclaredDigests"]["sha256"] == sha256_b64, what
            assert not (server.upload_dir / f"{upload_id}.rollback").exists(), what


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_uploads_under_load_survive_three_sigkills(make_server, tmp_path: Path, workers: int) -> None:  # type: ignore[no-untyped-def]
    # T-CORE-18/20 (acknowledged bytes stored), T-CHK-5 (unverified bytes never counted).
    flags = ("-workers", str(workers)) if workers > 1 else ()
    server = make_server(*flags, upload_dir=tmp_path / "load")
    uploads = make_uploads()
    rng = random.Random(SEED + workers)
    thresholds = [rng.uniform(low, high) for low, high in KILL_WINDOWS[:KILLS]]
    started = time.monotonic()

    async def main() -> Run:
        limits = httpx.Limits(max_connections=2 * UPLOADS, max_keepalive_connections=2 * UPLOADS)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
            run = Run(server, uploads, client)
            await run_all(run, make_server, thresholds)
            return run

    run = asyncio.run(main())
    elapsed = time.monotonic() - started
    verify(run.server, uploads)
    figures = run.figures
    rereads = run.server.log().count("re-reading upload")  # workers log nothing: see the report
    known = {u.url.rsplit("/", 1)[1] for u in uploads if u.url}
    orphans = sum(p.stem not in known for p in run.server.upload_dir.glob("*.info"))  # POSTs cut before their 201
    print(
        f"\n[{workers} worker(s)] uploads={figures.uploads} bytes={figures.bytes} "
        f"sent={figures.bytes_sent} requests={figures.requests} kills={figures.kills} "
        f"kill_points={[round(t, 3) for t in thresholds]} transport_errors={figures.transport_errors} "
        f"retried_answers={figures.retried_answers} recreated={figures.recreated} orphans={orphans} "
        f"rereads={rereads} losses={len(figures.losses)} unverified={len(figures.unverified)} "
        f"elapsed={elapsed:.1f}s"
    )
    assert figures.kills == KILLS
    assert figures.losses == []
    assert figures.unverified == []
    assert figures.transport_errors >= KILLS  # the kills really cut requests
    assert all(u.done for u in uploads)
