#!/usr/bin/env python3
"""Load test for tusd-py: many small uploads, then a few big ones, against `tusd-py -workers N`.

Not part of pytest (tests/test_load_smoke.py runs it with small counts). Run by hand:

    .venv/bin/python bench/load.py                      # 1,000 x 16-64 KiB, then 50 x 100 MiB
    .venv/bin/python bench/load.py --small 100 --large 4 --large-size 8MiB

It starts the server on a fresh directory (under /dev/shm when that tmpfs has room,
so the disk does not set the pace), and runs two phases, all uploads of a phase at once:

  small  N uploads of 16-64 KiB, alternately creation-with-upload (one POST carrying
         the bytes) and POST + PATCH;
  large  M uploads of --large-size each, the bytes generated while they are sent
         (never held in memory), one PATCH per upload unless --large-patch-size.

Every upload is verified: HEAD shows Upload-Offset == Upload-Length, Repr-Digest (when
present) is the sha256 the client computed, and the stored file's sha256 matches.
Any failed request, unexpected status or mismatch counts as an error; the exit code
is 1 if there was any.

Peak RSS is the sum of VmHWM over the server's process tree (supervisor + workers),
read from /proc; the high-water marks are reset (clear_refs 5) before each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"
KiB = 1 << 10
MiB = 1 << 20
MB = 10**6
START_TIMEOUT = 30.0

_SIZE = re.compile(r"(\d+)\s*(b|kib|mib|gib|kb|mb|gb|k|m|g)?", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": 1 << 30, "gib": 1 << 30}
_UNITS |= {"kb": 1000, "mb": MB, "gb": 10**9}


def parse_size(text: str) -> int:
    """`100MiB`, `64KiB`, `8M` (binary), `1MB` (decimal), or plain bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _UNITS[unit]


# --- the server and its process tree ------------------------------------------------------------


class Server:
    def __init__(self, upload_dir: Path, workers: int, extra_flags: list[str]) -> None:
        self.upload_dir = upload_dir
        tusd = Path(sys.executable).with_name("tusd-py")
        program = [str(tusd)] if tusd.exists() else [sys.executable, "-m", "tusd_py"]
        self.command = [
            *program,
            "-host", "127.0.0.1",
            "-port", "0",
            "-upload-dir", str(upload_dir),
            *(["-workers", str(workers)] if workers > 1 else []),
            *extra_flags,
        ]  # fmt: skip
        self.log_path = upload_dir.parent / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log, bufsize=0)
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline and selector.select(max(0.0, deadline - time.monotonic())):
                line = self.process.stdout.readline()
                if not line:
                    break
                if b"serving at " in line:
                    self.url = line.decode().split("serving at ", 1)[1].strip()
                    return
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for pid in [self.process.pid, *self.tree()[1:]]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def wait_ready(self, workers: int) -> None:
        """Bounded wait until every worker is up and idle in epoll (it imports for a while
        after the supervisor printed the URL), so the first phase does not time start-up."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            pids = self.workers() if workers > 1 else [self.tree()[0]]
            if len(pids) == workers and all("poll" in _wchan(pid) for pid in pids):
                return
            time.sleep(0.05)
        raise RuntimeError(f"workers not ready: {self.workers()}")

    def tree(self) -> list[int]:
        """The server's pid and its descendants' (uvicorn workers, resource tracker)."""
        assert self.process is not None
        pids = [self.process.pid]
        for pid in pids:  # grows while we walk it
            try:
                pids += map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                pass
        return pids

    def workers(self) -> list[int]:
        return [
            pid
            for pid in self.tree()[1:]
            if b"multiprocessing.spawn" in _cmdline(pid) and b"resource_tracker" not in _cmdline(pid)
        ]

    def role(self, pid: int) -> str:
        assert self.process is not None
        if pid == self.process.pid:
            return "supervisor" if self.workers() else "server"
        return "tracker" if b"resource_tracker" in _cmdline(pid) else "worker"

    def reset_peak_rss(self) -> bool:
        ok = True
        for pid in self.tree():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the whole tree so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        user = system = 0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            user, system = user + int(fields[11]), system + int(fields[12])  # utime, stime
        return user / ticks, system / ticks

    def peak_rss(self) -> dict[int, int]:
        """VmHWM in bytes of every process of the tree."""
        peaks = {}
        for pid in self.tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
            if match:
                peaks[pid] = int(match.group(1)) * KiB
        return peaks


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


# --- uploads -----------------------------------------------------------------------------------


class HttpError(Exception):
    """The connection failed or the server answered something malformed."""


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection on asyncio streams.

    The load generator must cost far less CPU than the server it measures; httpx
    with a thousand pooled connections spends several ms of CPU per request here.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.reader = self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | AsyncIterator[bytes] = b"",
        length: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(self.timeout):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            if length is None:
                length = len(body) if isinstance(body, bytes) else 0
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            if length or method in ("POST", "PATCH"):
                lines.append(f"Content-Length: {length}")
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            if isinstance(body, bytes):
                self.writer.write(body)
            else:
                async for block in body:
                    self.writer.write(block)
                    await self.writer.drain()
            await self.writer.drain()
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                await self.close()
                raise HttpError(f"{method} {path}: no response ({type(exc).__name__})") from None
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise HttpError(f"bad status line {status_line!r}")
            response_headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    response_headers[name.strip().lower()] = value.strip()
            size = 0 if method == "HEAD" else int(response_headers.get("content-length", "0"))
            payload = await self.reader.readexactly(size) if size else b""
            if response_headers.get("connection", "").lower() == "close":
                await self.close()
            return int(parts[1]), response_headers, payload


@dataclass
class Result:
    phase: str
    uploads: int
    size: str
    concurrency: int
    mode: str
    seconds: float = 0.0
    verify_seconds: float = 0.0
    bytes: int = 0
    completed: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    server_peak_rss: int = 0  # bytes, sum of VmHWM over the tree
    server_processes: int = 0
    server_peak_rss_by_process: dict[str, float] = field(default_factory=dict)  # "role pid" -> MiB
    rss_reset: bool = True
    server_cpu: float = 0.0  # seconds, whole tree, user + system
    server_cpu_system: float = 0.0
    client_cpu: float = 0.0

    @property
    def uploads_per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds else 0.0


@dataclass
class Done:
    upload_id: str
    length: int
    sha256: bytes


class Failure(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Phase:
    """Runs uploads concurrently, each on its own connection; failures are counted, never raised."""

    def __init__(self, server: Server, result: Result, timeout: float) -> None:
        self.server = server
        self.result = result
        self.timeout = timeout
        split = urlsplit(server.url)
        self.host, self.port, self.base = split.hostname or "127.0.0.1", split.port or 80, split.path
        self.kinds: Counter[str] = Counter()
        self.done: list[Done] = []

    def error(self, kind: str, detail: str) -> None:
        self.kinds[kind] += 1
        if self.kinds[kind] <= 3:
            print(f"  error [{self.result.phase}] {kind}: {detail}", flush=True)

    async def guarded(self, job: Callable[[Connection], Awaitable[Done]]) -> None:
        connection = Connection(self.host, self.port, self.timeout)
        try:
            done = await job(connection)
        except Failure as failure:
            self.error(failure.kind, failure.detail)
        except (OSError, HttpError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.error(type(exc).__name__, repr(exc))
        else:
            self.done.append(done)
        finally:
            await connection.close()

    @staticmethod
    def expect(response: tuple[int, dict[str, str], bytes], status: int, what: str) -> dict[str, str]:
        if response[0] != status:
            raise Failure(f"{what} {response[0]}", response[2][:200].decode(errors="replace"))
        return response[1]

    async def finish(self, connection: Connection, path: str, length: int, sha256: bytes) -> Done:
        """HEAD: complete, and the server's whole-file sha-256 is ours."""
        headers = self.expect(await connection.request("HEAD", path, TUS), 200, "HEAD")
        if headers.get("upload-offset") != str(length) or headers.get("upload-length") != str(length):
            raise Failure("incomplete", f"{path}: offset {headers.get('upload-offset')} of {length}")
        digest = headers.get("repr-digest")
        if digest is not None and f"sha-256=:{base64.b64encode(sha256).decode()}:" not in digest:
            raise Failure("repr-digest mismatch", f"{path}: {digest}")
        return Done(path.rsplit("/", 1)[1], length, sha256)

    def verify_stored(self) -> None:
        """sha256 of every stored file, in threads (hashlib releases the GIL)."""

        def one(done: Done) -> tuple[Done, bytes | None]:
            hasher = hashlib.sha256()
            try:
                with open(self.server.upload_dir / done.upload_id, "rb") as f:
                    while block := f.read(4 * MiB):
                        hasher.update(block)
            except OSError:
                return done, None
            return done, hasher.digest()

        with ThreadPoolExecutor(max_workers=4) as pool:
            for done, digest in pool.map(one, self.done):
                if digest != done.sha256:
                    self.error("stored bytes mismatch", done.upload_id)
                else:
                    self.result.completed += 1
                    self.result.bytes += done.length

    async def run(self, jobs: list[Callable[[Connection], Awaitable[Done]]]) -> None:
        self.result.rss_reset = self.server.reset_peak_rss()
        server_cpu, client_cpu = self.server.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(self.guarded(job) for job in jobs))
        self.result.seconds = time.perf_counter() - started
        user, system = self.server.cpu_seconds()
        self.result.server_cpu = user + system - sum(server_cpu)
        self.result.server_cpu_system = system - server_cpu[1]
        self.result.client_cpu = time.process_time() - client_cpu
        peaks = self.server.peak_rss()
        self.result.server_peak_rss = sum(peaks.values())
        self.result.server_processes = len(peaks)
        self.result.server_peak_rss_by_process = {
            f"{self.server.role(pid)} {pid}": round(peak / MiB, 1) for pid, peak in peaks.items()
        }
        started = time.perf_counter()
        await asyncio.to_thread(self.verify_stored)
        self.result.verify_seconds = time.perf_counter() - started
        self.result.errors = sum(self.kinds.values())
        self.result.error_kinds = dict(self.kinds)


def location_path(headers: dict[str, str]) -> str:
    location = headers.get("location")
    if not location:
        raise Failure("no Location", repr(headers))
    return urlsplit(location).path


async def small_upload(phase: Phase, connection: Connection, data: bytes, with_body: bool) -> Done:
    sha256 = hashlib.sha256(data).digest()
    headers = {**TUS, "Upload-Length": str(len(data))}
    if with_body:  # creation-with-upload: one request
        response = await connection.request("POST", phase.base, {**headers, "Content-Type": OCTET}, data)
        created = phase.expect(response, 201, "POST")
        if created.get("upload-offset") != str(len(data)):
            raise Failure("POST stored short", created.get("upload-offset", "-"))
        path = location_path(created)
    else:
        path = location_path(phase.expect(await connection.request("POST", phase.base, headers), 201, "POST"))
        patch_headers = {**TUS, "Upload-Offset": "0", "Content-Type": OCTET}
        phase.expect(await connection.request("PATCH", path, patch_headers, data), 204, "PATCH")
    return await phase.finish(connection, path, len(data), sha256)


def block_source(seed: int, block_size: int) -> bytes:
    return random.Random(seed).randbytes(block_size)


async def generated(base: bytes, upload: int, start: int, end: int, hasher: Any) -> AsyncIterator[bytes]:
    """Bytes start..end of upload `upload`: block k is `base` stamped with (upload, k).
    Made as they are sent, never held whole; the hasher sees them in order."""
    size = len(base)
    position = start
    while position < end:
        k, skip = divmod(position, size)
        block = (upload.to_bytes(8, "big") + k.to_bytes(8, "big") + base[16:])[skip : skip + end - position]
        hasher.update(block)
        position += len(block)
        yield block


async def large_upload(
    phase: Phase, connection: Connection, base: bytes, index: int, length: int, patch_size: int
) -> Done:
    created = await connection.request("POST", phase.base, {**TUS, "Upload-Length": str(length)})
    path = location_path(phase.expect(created, 201, "POST"))
    hasher = hashlib.sha256()
    offset = 0
    while offset < length:
        end = min(length, offset + patch_size) if patch_size else length
        headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTET}
        body = generated(base, index, offset, end, hasher)
        response = await connection.request("PATCH", path, headers, body, length=end - offset)
        acknowledged = phase.expect(response, 204, "PATCH").get("upload-offset")
        if acknowledged != str(end):
            raise Failure("PATCH offset", f"{path}: {acknowledged} != {end}")
        offset = end
    return await phase.finish(connection, path, length, hasher.digest())


# --- main --------------------------------------------------------------------------------------


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # the client, like the server, on uvloop when installed
    except ImportError:
        return None
    return uvloop.new_event_loop


def choose_dir(needed: int, requested: str | None) -> Path:
    if requested:
        return Path(tempfile.mkdtemp(prefix="tusd-py-load-", dir=requested))
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > needed * 1.2 + 256 * MiB:
        return Path(tempfile.mkdtemp(prefix="tusd-py-load-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="tusd-py-load-"))


def human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def table(results: list[Result]) -> str:
    lines = [
        "| phase | uploads ok | size | mode | wall s | uploads/s | MB/s | errors "
        "| server peak RSS MiB (procs) | server CPU s (of which sys) | client CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rss = f"{r.server_peak_rss / MiB:.1f} ({r.server_processes})" + ("" if r.rss_reset else " cumulative")
        lines.append(
            f"| {r.phase} | {r.completed}/{r.uploads} | {r.size} | {r.mode} | {r.seconds:.2f} | "
            f"{r.uploads_per_second:,.0f} | {r.mb_per_second:,.1f} | {r.errors} | {rss} | "
            f"{r.server_cpu:.1f} ({r.server_cpu_system:.1f}) | {r.client_cpu:.1f} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace, server: Server) -> list[Result]:
    results = []
    rng = random.Random(args.seed)
    if args.small:
        result = Result("small", args.small, f"{human(args.small_min)}-{human(args.small_max)}", args.small,
                        "creation-with-upload / POST+PATCH, alternating")  # fmt: skip
        phase = Phase(server, result, args.timeout)
        payloads = [rng.randbytes(rng.randint(args.small_min, args.small_max)) for _ in range(args.small)]
        await phase.run([lambda c, d=d, i=i: small_upload(phase, c, d, i % 2 == 0) for i, d in enumerate(payloads)])
        results.append(result)
    if args.large:
        how = f"{human(args.large_patch_size)} PATCHes" if args.large_patch_size else "one PATCH"
        result = Result("large", args.large, human(args.large_size), args.large, f"POST + {how}, generated")
        phase = Phase(server, result, args.timeout)
        base = block_source(args.seed, args.block_size)
        await phase.run(
            [
                lambda c, i=i: large_upload(phase, c, base, i, args.large_size, args.large_patch_size)
                for i in range(args.large)
            ]
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="concurrent small uploads (0 = skip)")
    parser.add_argument("--small-min", type=parse_size, default=16 * KiB)
    parser.add_argument("--small-max", type=parse_size, default=64 * KiB)
    parser.add_argument("--large", type=int, default=50, help="concurrent large uploads (0 = skip)")
    parser.add_argument("--large-size", type=parse_size, default=100 * MiB)
    parser.add_argument("--large-patch-size", type=parse_size, default=0, help="0 = one PATCH per upload")
    parser.add_argument("--block-size", type=parse_size, default=1 * MiB, help="generator block size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-flag", action="append", default=[], help="extra server flag (repeatable)")
    parser.add_argument("--dir", help="parent of the upload directory (default: /dev/shm if it has room)")
    parser.add_argument("--keep", action="store_true", help="keep the upload directory")
    parser.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.small_min > args.small_max or args.block_size < 64:
        parser.error("--small-min must be <= --small-max, --block-size >= 64")

    # SIGTERM (a CI timeout) must still stop the server and remove the directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    needed = args.large * args.large_size + args.small * args.small_max
    workdir = choose_dir(needed, args.dir)
    server = Server(workdir / "uploads", args.workers, args.server_flag)
    (workdir / "uploads").mkdir()
    try:
        server.start()
        server.wait_ready(max(1, args.workers))
        print(f"server: {' '.join(server.command)}", flush=True)
        print(f"  at {server.url}, {len(server.workers())} worker(s), process tree {server.tree()}", flush=True)
        load = os.getloadavg()[0]
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            results = runner.run(run(args, server))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    where = "tmpfs /dev/shm" if str(workdir).startswith("/dev/shm") else str(workdir.parent)
    client_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KiB
    verify = ", ".join(f"{r.verify_seconds:.1f} s" for r in results)
    print(
        f"\ntusd-py -workers {args.workers} on {where}; {os.cpu_count()} CPUs (load average {load:.1f} before "
        f"the run); client peak RSS {client_rss / MiB:.0f} MiB; MB = 10^6 B; wall = all uploads of the phase "
        f"incl. HEAD; stored-file sha256 checked afterwards ({verify})\n"
    )
    print(table(results))
    for r in results:
        by_process = ", ".join(f"{name}: {mib}" for name, mib in r.server_peak_rss_by_process.items())
        print(f"\npeak RSS MiB in {r.phase}: {by_process}")
        if r.error_kinds:
            print(f"\nerrors in {r.phase}: {r.error_kinds}")
    if args.json:
        document = [asdict(r) | {"uploads_per_second": r.uploads_per_second, "mb_per_second": r.mb_per_second}
                    for r in results]  # fmt: skip
        Path(args.json).write_text(json.dumps(document, indent=1))
    return 1 if any(r.errors for r in results) or any(r.completed != r.uploads for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
