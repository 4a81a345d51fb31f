"""S3 benchmark: tusd-py over moto's S3 server on 127.0.0.1.

Uploads SIZE bytes in one PATCH and in 8 MiB PATCHes, checks every upload's
sha256 (Repr-Digest), and reports MB/s and the server's peak RSS. For scale, the
same bytes are also sent straight to moto with boto3's multipart upload (what the
S3 server itself takes on this machine).

    .venv/bin/python bench/s3.py [--size-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import TUS, TusServer, proc_status_kib, start_server  # noqa: E402
from s3_server import AWS_ENVIRONMENT, start_s3_server  # noqa: E402

MiB = 1 << 20
BLOCK = os.urandom(8 * MiB)  # repeated: the client must not be the bottleneck


def body(size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        block = BLOCK[: min(len(BLOCK), size - sent)]
        sent += len(block)
        yield block


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for block in body(size):
        digest.update(block)
    return base64.b64encode(digest.digest()).decode()


def upload(client: httpx.Client, server: TusServer, size: int, chunk: int) -> float:
    """Seconds to create and upload `size` bytes in PATCHes of `chunk` bytes."""
    start = time.perf_counter()
    created = client.post(server.url, headers={**TUS, "Upload-Length": str(size)})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    offset = 0
    while offset < size:
        length = min(chunk, size - offset)
        answer = client.patch(
            url,
            content=body(length),
            headers={
                **TUS,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(length),
            },
        )
        assert answer.status_code == 204, answer.text
        offset = int(answer.headers["upload-offset"])
    elapsed = time.perf_counter() - start
    digest = client.head(url, headers={**TUS, "Want-Repr-Digest": "sha-256=1"}).headers.get("repr-digest", "")
    assert size % len(BLOCK) != 0 or digest == f"sha-256=:{expected_sha256(size)}:", digest
    client.delete(url, headers=TUS)
    return elapsed


def direct(endpoint: str, bucket: str, size: int) -> float:
    """Seconds for boto3 to put the same bytes straight into moto (multipart, 50 MiB parts)."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_ENVIRONMENT["AWS_REGION"],
    )
    source = io.BytesIO(b"".join(body(size)))
    config = TransferConfig(multipart_chunksize=50 * MiB, max_concurrency=10)
    start = time.perf_counter()
    s3.upload_fileobj(source, bucket, "direct", Config=config)
    elapsed = time.perf_counter() - start
    s3.delete_object(Bucket=bucket, Key="direct")
    s3.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB
    os.environ.update(AWS_ENVIRONMENT)
    with tempfile.TemporaryDirectory(prefix="tusd-py-s3-bench-") as work:
        s3 = start_s3_server(Path(work) / "moto.log")
        try:
            s3.create_bucket("bench")
            server = start_server(Path(work) / "uploads", "-s3-bucket", "bench", "-s3-endpoint", s3.endpoint)
            try:
                results: dict[str, list[float]] = {"one PATCH": [], "8 MiB PATCHes": [], "boto3 direct": []}
                with httpx.Client(timeout=600.0) as client:
                    for _ in range(args.rounds):  # alternating, so drift hits every case alike
                        results["one PATCH"].append(size / upload(client, server, size, size) / 1e6)
                        results["8 MiB PATCHes"].append(size / upload(client, server, size, 8 * MiB) / 1e6)
                        results["boto3 direct"].append(size / direct(s3.endpoint, "bench", size) / 1e6)
                peak = proc_status_kib(server.process.pid)["VmHWM"] / 1024
            finally:
                server.stop()
        finally:
            s3.stop()
    print(f"S3 (moto server on 127.0.0.1), {args.size_mib} MiB per upload, median of {args.rounds}:\n")
    print("| upload | MB/s | min..max |")
    print("|---|---|---|")
    for name, figures in results.items():
        print(f"| {name} | {statistics.median(figures):,.0f} | {min(figures):,.0f}..{max(figures):,.0f} |")
    print(f"\ntusd-py peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
