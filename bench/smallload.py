"""Small-request load for profiling and quick A/B checks: W3-style creations
(16 KiB creation-with-upload, c32) or W4-style HEADs (c64), for a fixed time.

Reuses the shared harness's keep-alive client (../shared/bench/tusload.py), so
figures are comparable with W3/W4 of `make bench`, but a run lasts as long as
a profiler needs. Loopback only; every run is bounded by --seconds.

    .venv/bin/python bench/smallload.py --url http://127.0.0.1:PORT/files/ --mode create --seconds 20
    .venv/bin/python bench/smallload.py --url http://127.0.0.1:PORT/files/ --mode head --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench")
sys.path.insert(0, os.environ.get("SHARED_BENCH", HARNESS))

from tusload import Target, aconnect, pct, run_async  # noqa: E402

SIZE = 16 * 1024


def creation_request(target: Target) -> bytes:
    return (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.hosthdr}\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Length: {SIZE}\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {SIZE}\r\n\r\n"
    ).encode() + os.urandom(SIZE)


async def run(target: Target, mode: str, seconds: float, concurrency: int, uploads: int) -> dict[str, float]:
    paths: list[str] = []
    if mode == "head":  # uploads to HEAD, created first (untimed)
        paths = await create(target, uploads, 32)
    raws = [f"HEAD {p} HTTP/1.1\r\nHost: {target.hosthdr}\r\nTus-Resumable: 1.0.0\r\n\r\n".encode() for p in paths]
    post = creation_request(target)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        conn = await aconnect(target)
        i = index
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if mode == "head":
                    status, headers = await asyncio.wait_for(conn.request(raws[i % len(raws)], head=True), 30)
                    expected = 200
                else:
                    status, headers = await asyncio.wait_for(conn.request(post), 30)
                    expected = 201
                if status != expected:
                    raise RuntimeError(f"{mode}: status {status}")
                latencies.append(time.perf_counter() - started)
                i += concurrency
        finally:
            conn.tr.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    wall = time.perf_counter() - started
    return {"per_s": round(len(latencies) / wall, 1), "p50_ms": round(pct(latencies, 50) * 1e3, 2),
            "p99_ms": round(pct(latencies, 99) * 1e3, 2), "requests": len(latencies)}  # fmt: skip


async def create(target: Target, count: int, concurrency: int) -> list[str]:
    post = creation_request(target)
    paths: list[str] = []
    remaining = iter(range(count))

    async def worker() -> None:
        conn = await aconnect(target)
        try:
            for _ in remaining:
                status, headers = await asyncio.wait_for(conn.request(post), 30)
                if status != 201:
                    raise RuntimeError(f"POST -> {status}")
                paths.append(target.loc_path(headers["location"]))
        finally:
            conn.tr.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("create", "head"), required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, help="default: 32 for create, 64 for head (W3, W4)")
    parser.add_argument("--uploads", type=int, default=2000, help="uploads created for --mode head")
    args = parser.parse_args()
    concurrency = args.concurrency or (32 if args.mode == "create" else 64)
    result = run_async(run(Target(args.url), args.mode, min(args.seconds, 600), concurrency, args.uploads))
    print(" ".join(f"{key}={value}" for key, value in result.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
