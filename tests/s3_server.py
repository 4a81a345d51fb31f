"""moto's S3 server as a separate process on 127.0.0.1, for the S3 store's tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import free_port, stop_process

START_TIMEOUT = 20.0
# Credentials moto accepts; the store reads them from the environment like any AWS client.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@dataclass
class S3Server:
    process: subprocess.Popen[bytes]
    endpoint: str

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_client_credentials())

    def create_bucket(self, name: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()

    def stop(self) -> None:
        stop_process(self.process)


def _client_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENVIRONMENT["AWS_REGION"],
    }


def start_s3_server(log_path: Path, *, min_part_size: int | None = None) -> S3Server:
    """Start `moto_server` on a free port and wait (bounded) until it answers."""
    port = free_port()
    environment = {**os.environ, **AWS_ENVIRONMENT}
    if min_part_size is not None:
        environment["S3_UPLOAD_PART_MIN_SIZE"] = str(min_part_size)  # moto's check at CompleteMultipartUpload
    moto_server = Path(sys.executable).with_name("moto_server")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=environment
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}; see {log_path}")
        try:
            httpx.get(endpoint + "/", timeout=1.0)
            return S3Server(process, endpoint)
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"moto_server did not answer within {START_TIMEOUT} s; see {log_path}")
