"""client_demo/upload.py (tuspy command-line demo) as a user runs it, against a real server."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from conftest import TusServer, head

DEMO = Path(__file__).resolve().parent.parent / "client_demo" / "upload.py"
RUN_TIMEOUT = 60.0
KiB = 1 << 10
MiB = 1 << 20


def run_demo(server: TusServer, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(DEMO), "--endpoint", server.url, "--state", str(state), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def write_random_file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def upload_ids(server: TusServer) -> list[str]:
    return sorted(path.stem for path in server.upload_dir.glob("*.info"))


def stored(server: TusServer, url: str) -> bytes:
    return (server.upload_dir / url.rsplit("/", 1)[1]).read_bytes()


def test_uploads_each_file_and_prints_its_url(server: TusServer, client: httpx.Client, tmp_path: Path) -> None:
    first = write_random_file(tmp_path / "a.bin", 300 * KiB + 1, seed=41)
    second = write_random_file(tmp_path / "b.bin", 2 * MiB + 3, seed=42)
    done = run_demo(server, tmp_path / "state.json", str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
    assert done.returncode == 0, done.stderr
    urls = done.stdout.split()
    assert len(urls) == 2 and all(url.startswith(server.url) for url in urls)
    assert stored(server, urls[0]) == first
    assert stored(server, urls[1]) == second
    assert "100.0%" in done.stderr  # the progress bar reached the end
    assert head(client, urls[1]).headers["upload-offset"] == str(len(second))


def test_rerun_after_a_kill_resumes_the_same_upload(
    make_server: Callable[..., TusServer], client: httpx.Client, tmp_path: Path
) -> None:
    # T-CORE-9, T-CORE-23: the killed run left bytes on the server; the rerun finds the URL
    # in its state file, asks HEAD for the offset and continues there.
    server = make_server()
    source = tmp_path / "movie.bin"
    data = write_random_file(source, 8 * MiB, seed=43)
    state = tmp_path / "state.json"
    command = [sys.executable, str(DEMO), str(source), "--endpoint", server.url, "--state", str(state)]
    with open(tmp_path / "first.log", "wb") as log:
        # Small requests, so the upload takes long enough to be killed half-way.
        first = subprocess.Popen([*command, "--chunk-size", str(16 * KiB)], stdout=log, stderr=log)
        try:
            offset_at_kill = wait_for_half_uploaded(server, len(data), first)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
    assert 0 < offset_at_kill < len(data), "the first run was not interrupted half-way"
    (upload_id,) = upload_ids(server)

    rerun = run_demo(server, state, str(source))
    assert rerun.returncode == 0, rerun.stderr
    url = rerun.stdout.strip()
    assert url.rsplit("/", 1)[1] == upload_id
    resumed = re.search(r"resuming (\S+) at offset (\d+)", rerun.stderr)
    assert resumed is not None, rerun.stderr
    assert resumed.group(1) == url
    assert int(resumed.group(2)) >= offset_at_kill > 0
    assert upload_ids(server) == [upload_id]  # no second upload was created
    assert stored(server, url) == data
    assert head(client, url).headers["upload-offset"] == str(len(data))

    again = run_demo(server, state, str(source))  # a finished upload is not sent twice
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == url
    assert "already uploaded" in again.stderr
    assert upload_ids(server) == [upload_id]


def wait_for_half_uploaded(server: TusServer, size: int, process: subprocess.Popen[bytes]) -> int:
    """Poll (bounded) until the one data file holds more than half the bytes; its size."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        for info in server.upload_dir.glob("*.info"):
            data_file = info.with_suffix("")
            if data_file.exists() and data_file.stat().st_size > size // 2:
                return data_file.stat().st_size
        time.sleep(0.002)
    raise AssertionError(f"the upload never passed half-way (exit status {process.poll()})")


def test_checksum_declares_the_whole_file_sha256(server: TusServer, client: httpx.Client, tmp_path: Path) -> None:
    # spec_notes/whole-file-checksum.md: metadata `checksum: sha256 <hex>`, verified on completion.
    data = write_random_file(tmp_path / "report.pdf", MiB + 5, seed=44)
    done = run_demo(
        server, tmp_path / "state.json", str(tmp_path / "report.pdf"), "--checksum", "--chunk-size", "262144"
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert stored(server, url) == data
    sha256 = hashlib.sha256(data)
    info = json.loads((server.upload_dir / (url.rsplit("/", 1)[1] + ".info")).read_text())
    assert info["MetaData"] == {"filename": "report.pdf", "checksum": f"sha256 {sha256.hexdigest()}"}
    response = head(client, url)
    assert response.headers["upload-offset"] == str(len(data))
    assert f"sha-256=:{base64.b64encode(sha256.digest()).decode()}:" in response.headers["repr-digest"]
