"""client_demo/download.py against a real server: a plain download, an interrupted one that
resumes with `Range` + `If-Range`, and the final `Repr-Digest` check catching a corrupted
partial file (spec_notes/downloads.md)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import TusServer, create, patch

SCRIPT = Path(__file__).resolve().parent.parent / "client_demo" / "download.py"
SIZE = 20 * 1024 * 1024
DATA = random.Random(8).randbytes(SIZE)
RATE = 8 * 1024 * 1024  # bytes per second: the whole file takes ~2.5 s, half of it ~1.2 s
DEADLINE = 30.0


@pytest.fixture(scope="module")
def url(server: TusServer) -> str:
    with httpx.Client(timeout=30.0) as client:
        upload_url = create(client, server, SIZE)
        assert patch(client, upload_url, 0, DATA).status_code == 204
    return upload_url


def run(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), url, "-o", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def interrupted_download(url: str, out: Path) -> int:
    """Start a rate-limited download and kill it once more than half the file is on disk."""
    with open(out.with_name("first-run.log"), "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), url, "-o", str(out), "--limit-rate", str(RATE)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists() and out.stat().st_size > SIZE // 2:
                break
            time.sleep(0.01)  # polling with a deadline, not synchronisation
        assert process.poll() is None, "the download finished before it could be interrupted"
        assert out.stat().st_size > SIZE // 2
    finally:
        process.kill()
        process.wait(timeout=10)
    size = out.stat().st_size
    assert SIZE // 2 < size < SIZE
    assert out.with_name(out.name + ".etag").exists()
    return size


def test_download_whole_file(url: str, tmp_path: Path) -> None:
    out = tmp_path / "file.bin"
    result = run(url, out)
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stderr
    assert "resuming" not in result.stderr
    assert out.read_bytes() == DATA
    assert not out.with_name("file.bin.etag").exists()


def test_interrupted_download_resumes(url: str, tmp_path: Path) -> None:
    out = tmp_path / "file.bin"
    partial = interrupted_download(url, out)
    result = run(url, out)
    assert result.returncode == 0, result.stderr
    assert f"resuming at {partial} bytes" in result.stderr  # it sent Range: bytes=<partial>-
    assert "starting again" not in result.stderr
    assert "verified" in result.stderr
    assert out.read_bytes() == DATA


def test_corrupted_partial_file_fails_verification(url: str, tmp_path: Path) -> None:
    out = tmp_path / "file.bin"
    partial = interrupted_download(url, out)
    with open(out, "r+b") as f:  # flip a byte in the first half
        f.seek(SIZE // 4)
        byte = f.read(1)
        f.seek(SIZE // 4)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = run(url, out)
    assert result.returncode == 1, result.stderr
    assert f"resuming at {partial} bytes" in result.stderr
    assert "checksum mismatch" in result.stderr
    assert out.stat().st_size == SIZE


def test_stale_etag_starts_again(url: str, tmp_path: Path) -> None:
    # If-Range with a validator that no longer matches: the server sends 200 and everything.
    out = tmp_path / "file.bin"
    out.write_bytes(b"old content of another version")
    out.with_name("file.bin.etag").write_text('"0000"')
    result = run(url, out)
    assert result.returncode == 0, result.stderr
    assert "resuming at 30 bytes" in result.stderr
    assert "starting again" in result.stderr
    assert out.read_bytes() == DATA


def test_partial_file_without_etag_is_downloaded_again(url: str, tmp_path: Path) -> None:
    out = tmp_path / "file.bin"
    out.write_bytes(DATA[:1000])
    result = run(url, out)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr
    assert out.read_bytes() == DATA


def test_unfinished_upload_fails_cleanly(server: TusServer, tmp_path: Path) -> None:
    with httpx.Client(timeout=10.0) as client:
        unfinished = create(client, server, 10)
    result = run(unfinished, tmp_path / "file.bin")
    assert result.returncode == 1
    assert "404" in result.stderr and "Traceback" not in result.stderr
