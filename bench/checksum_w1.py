"""W1 with and without a declared whole-file checksum, alternating.

Each run: POST (Upload-Length: 1 GiB, with or without metadata `checksum` =
"<algorithm> <base64 digest of the source>"), one PATCH streaming 1 GiB with
sendfile from the harness's source file, DELETE. The server must be running
(data on tmpfs, as compare.sh does); the figure is MB/s of the PATCH.

    .venv/bin/tusd-py -host 127.0.0.1 -port 18090 -upload-dir /dev/shm/w1sum &
    .venv/bin/python bench/checksum_w1.py --url http://127.0.0.1:18090/files/ --pairs 3
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import sys
import time

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench")
sys.path.insert(0, os.environ.get("SHARED_BENCH", HARNESS))

from tusload import BConn, Target, ensure_src  # noqa: E402

GiB = 1 << 30


def source_digest(path: str, algorithm: str) -> bytes:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.digest()


def one_upload(target: Target, src: str, declared: str | None) -> float:
    conn = BConn(target, 300)
    try:
        headers = {"Upload-Length": str(GiB)}
        if declared is not None:
            headers["Upload-Metadata"] = "checksum " + base64.b64encode(declared.encode()).decode()
        status, response = conn.request("POST", target.path, headers)
        if status != 201:
            raise RuntimeError(f"POST -> {status}")
        path = target.loc_path(response["location"])
        with open(src, "rb") as f:
            started = time.perf_counter()
            status, response = conn.request(
                "PATCH",
                path,
                {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
                body_file=f,
                offset=0,
                count=GiB,
            )
            elapsed = time.perf_counter() - started
        if status != 204 or response.get("upload-offset") != str(GiB):
            raise RuntimeError(f"PATCH -> {status} {response}")
        status, _ = conn.request("DELETE", path, {})
        if status != 204:
            raise RuntimeError(f"DELETE -> {status}")
        return GiB / elapsed / 1e6
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--algorithm", default="sha256", choices=("md5", "sha1", "sha256", "sha512"))
    parser.add_argument("--src", default=os.path.join(HARNESS, "work", "src-1g.bin"))
    args = parser.parse_args()
    ensure_src(args.src, GiB)  # written on first use, as tusload does
    src = args.src
    declared = f"{args.algorithm} {base64.b64encode(source_digest(src, args.algorithm)).decode()}"
    target = Target(args.url)
    plain: list[float] = []
    with_sum: list[float] = []
    for _ in range(min(args.pairs, 20)):
        plain.append(one_upload(target, src, None))
        with_sum.append(one_upload(target, src, declared))
        print(f"without {plain[-1]:.0f} MB/s, with {args.algorithm} {with_sum[-1]:.0f} MB/s", flush=True)
    ratios = [w / p for w, p in zip(with_sum, plain, strict=True)]
    print(
        f"median without {statistics.median(plain):.0f} MB/s, with {args.algorithm} {statistics.median(with_sum):.0f}"
        f" MB/s, ratio {statistics.median(with_sum) / statistics.median(plain):.2f}"
        f" (pairwise {min(ratios):.2f}..{max(ratios):.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
