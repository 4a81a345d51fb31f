"""A full disk: 507 ERR_STORAGE_FULL, the bytes that fit are kept and counted, nothing is
corrupted, and once space is freed the upload resumes to a byte-identical file.

The real thing when possible: as root, the upload directory is an 8 MiB tmpfs filled with a
ballast file to leave a few MiB. Always, in addition: a server whose `os.pwrite` runs out of
"space" after a byte budget the test sets (ENOSPC injected by a wrapper around the CLI), so
the write path is covered without root too. Tests that need other writes to fail (the .info of
a new upload, a concatenation) run on tmpfs only.

Wire policy: ENOSPC/EDQUOT -> 507 ERR_STORAGE_FULL, any other OSError -> 500 ERR_STORAGE;
HEAD's offset is always the size of the data file (T-CORE-23: keep what was received).

Every upload here declares its sha-256 at creation, so the server hashes bytes as they
arrive: completing with 204 (not 460) proves a failed write did not leave that running hash
out of step with the stored bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import START_TIMEOUT, TUS, TusServer, _read_url, create, head, patch, start_server

KiB = 1 << 10
MiB = 1 << 20
OCTET = "application/offset+octet-stream"
DATA = random.Random(507).randbytes(6 * MiB)
TMPFS_SIZE = "8m"

# Runs the CLI with os.pwrite limited by a budget file (bytes still "free"; no file: unlimited).
INJECT_ENOSPC = """
import errno, os, sys

BUDGET = os.environ["TUSD_TEST_FREE_BYTES"]
_pwrite = os.pwrite


def pwrite(fd, data, offset):
    try:
        with open(BUDGET) as f:
            free = int(f.read())
    except FileNotFoundError:
        return _pwrite(fd, data, offset)
    if free <= 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    written = _pwrite(fd, memoryview(data)[:free], offset)
    with open(BUDGET, "w") as f:
        f.write(str(free - written))
    return written


os.pwrite = pwrite
from tusd_py.cli import main

sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Disk:
    kind: str  # "tmpfs" or "injected"
    root: Path  # holds the upload directory
    budget: Path  # injected: the budget file

    def fill(self, leave: int) -> None:
        """Leave about `leave` bytes free (a multiple of the page size on tmpfs; 0: completely full)."""
        if self.kind == "injected":
            self.budget.write_text(str(leave))
            return
        free = os.statvfs(self.root).f_bavail * os.statvfs(self.root).f_frsize
        with open(self.root / "ballast", "wb") as f:
            remaining = free - leave
            try:
                while remaining > 0:
                    remaining -= f.write(b"\0" * min(MiB, remaining))
            except OSError:
                pass  # full before the target: fine for leave=0

    def free(self) -> None:
        (self.root / "ballast").unlink(missing_ok=True)
        self.budget.unlink(missing_ok=True)


def mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)], capture_output=True, timeout=10
    )
    return result.returncode == 0


def unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True, timeout=10).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


def start_injected(upload_dir: Path, budget: Path) -> TusServer:
    """conftest.start_server, but through the ENOSPC-injecting wrapper."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    wrapper = upload_dir.parent / "inject_enospc.py"
    wrapper.write_text(INJECT_ENOSPC)
    log_path = upload_dir.parent / "server.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(wrapper), "-host", "127.0.0.1", "-port", "0", "-upload-dir", str(upload_dir)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            bufsize=0,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TUSD_TEST_FREE_BYTES": str(budget)},
        )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        url = _read_url(process, selector, time.monotonic() + START_TIMEOUT)
    if url is None:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        raise RuntimeError(f"server did not start\n{log_path.read_text(errors='replace')}")
    return TusServer(process, url, upload_dir, log_path, [])


@pytest.fixture(params=["tmpfs", "injected"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Disk, TusServer]]:
    root = tmp_path / "disk"
    root.mkdir()
    mounted = False
    try:
        if request.param == "tmpfs":
            mounted = mount_tmpfs(root)
            if not mounted:
                pytest.skip("mounting a tmpfs needs root (the injected variant covers the write path)")
            server = start_server(root / "uploads")
        else:
            server = start_injected(root / "uploads", tmp_path / "free-bytes")
        try:
            yield Disk(request.param, root, tmp_path / "free-bytes"), server
        finally:
            server.stop()
    finally:
        if mounted:
            unmount(root)


def tmpfs_only(disk: Disk) -> None:
    if disk.kind != "tmpfs":
        pytest.skip("needs a real full filesystem (only data writes are injected)")


# --- checks ------------------------------------------------------------------------------------


def open_files(pid: int) -> list[str]:
    """What the server's descriptors open that is a file: sockets come and go with the
    client's connections, a leaked data file or marker descriptor would stay."""
    directory = f"/proc/{pid}/fd"
    targets = []
    for name in os.listdir(directory):
        try:
            target = os.readlink(f"{directory}/{name}")
        except FileNotFoundError:
            continue  # closed meanwhile
        if target.startswith("/"):
            targets.append(target)
    return sorted(targets)


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def declaring_sha256(data: bytes) -> dict[str, str]:
    """Creation headers declaring the whole upload's sha-256 (metadata `checksum`)."""
    checksum = base64.b64encode(f"sha256 {hashlib.sha256(data).hexdigest()}".encode()).decode()
    return {"Upload-Metadata": f"checksum {checksum}"}


def assert_storage_full(response: httpx.Response) -> None:
    assert response.status_code == 507, (response.status_code, response.text)
    assert response.text.startswith("ERR_STORAGE_FULL: "), response.text
    assert response.headers["tus-resumable"] == "1.0.0"


def assert_consistent(client: httpx.Client, server: TusServer, url: str, size: int) -> int:
    """HEAD's offset is the data file's size, the bytes are the upload's first bytes, the .info
    is whole, and there is no temporary or rollback file. Returns the offset."""
    data_path = server.upload_dir / upload_id(url)
    offset = int(head(client, url).headers["upload-offset"])
    assert offset == data_path.stat().st_size
    assert data_path.read_bytes() == DATA[:offset]
    info = json.loads((server.upload_dir / f"{upload_id(url)}.info").read_text())
    assert (info["ID"], info["Size"], info["SizeIsDeferred"]) == (upload_id(url), size, False)
    junk = [p.name for p in server.upload_dir.iterdir() if p.name.endswith((".tmp", ".rollback", ".concat"))]
    assert not junk, junk
    return offset


def assert_complete(client: httpx.Client, server: TusServer, url: str, data: bytes) -> None:
    """Complete, byte-identical, and its declared sha-256 verified and recorded at completion."""
    response = head(client, url)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(len(data))
    assert (server.upload_dir / upload_id(url)).read_bytes() == data
    assert client.get(url).content == data
    assert response.headers["repr-digest"] == f"sha-256=:{sha256_b64(data)}:"
    info = json.loads((server.upload_dir / f"{upload_id(url)}.info").read_text())
    assert info["Digests"] == {"sha256": sha256_b64(data)} and info["Finished"] is True


def only_uploads(server: TusServer) -> set[str]:
    return {p.name for p in server.upload_dir.iterdir() if not p.name.endswith((".lock", ".stop"))}


# --- PATCH --------------------------------------------------------------------------------------------


def test_disk_full_mid_patch_answers_507_keeps_what_fit_and_resumes(
    disk: tuple[Disk, TusServer], client: httpx.Client
) -> None:
    # T-CORE-23: the bytes that reached the disk are kept and HEAD reports exactly them.
    space, server = disk
    url = create(client, server, len(DATA), **declaring_sha256(DATA))
    space.fill(leave=3 * MiB)
    assert_storage_full(patch(client, url, 0, DATA))
    offset = assert_consistent(client, server, url, len(DATA))
    assert 1 * MiB < offset <= 3 * MiB, offset

    # Still full: another try answers 507 again and changes nothing.
    assert_storage_full(patch(client, url, offset, DATA[offset:]))
    assert assert_consistent(client, server, url, len(DATA)) == offset

    space.free()
    response = patch(client, url, offset, DATA[offset:])
    assert response.status_code == 204, response.text
    assert_complete(client, server, url, DATA)


def test_disk_full_during_checksummed_patch_keeps_nothing(disk: tuple[Disk, TusServer], client: httpx.Client) -> None:
    # T-CHK-*: a checksummed request counts only if all of it arrived and matched; a write
    # that failed half-way is rolled back like any other failure of that request.
    space, server = disk
    url = create(client, server, len(DATA), **declaring_sha256(DATA))
    first = DATA[: 1 * MiB]
    assert patch(client, url, 0, first).status_code == 204
    checksum = {"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(DATA[MiB:]).digest()).decode()}
    space.fill(leave=2 * MiB)
    assert_storage_full(patch(client, url, MiB, DATA[MiB:], **checksum))
    assert assert_consistent(client, server, url, len(DATA)) == MiB

    space.free()
    response = patch(client, url, MiB, DATA[MiB:], **checksum)
    assert response.status_code == 204, response.text
    assert_complete(client, server, url, DATA)


def test_checksummed_patch_on_a_completely_full_disk_leaves_no_trace(
    disk: tuple[Disk, TusServer], client: httpx.Client
) -> None:
    # Not even the rollback marker (written before the first byte) fits: 507, no stray
    # marker file, and no file left open in the server (sockets come and go with connections).
    space, server = disk
    tmpfs_only(space)
    url = create(client, server, len(DATA), **declaring_sha256(DATA))
    checksum = {"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(DATA).digest()).decode()}
    empty = {"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(b"").digest()).decode()}
    assert patch(client, url, 0, b"", **empty).status_code == 204  # warm-up: same path, nothing to write
    files = open_files(server.process.pid)
    space.fill(leave=0)
    for _ in range(3):
        assert_storage_full(patch(client, url, 0, DATA, **checksum))
    assert assert_consistent(client, server, url, len(DATA)) == 0
    assert open_files(server.process.pid) == files

    space.free()
    assert patch(client, url, 0, DATA, **checksum).status_code == 204
    assert_complete(client, server, url, DATA)


# --- POST ---------------------------------------------------------------------------------------------


def test_disk_full_during_creation_with_upload_answers_507_with_location(
    disk: tuple[Disk, TusServer], client: httpx.Client
) -> None:
    # creation-with-upload whose body does not fit: like a read timeout on the same request,
    # the upload exists with the bytes that fit, and the 507 carries its Location so the
    # client can resume once there is room (or terminate it).
    space, server = disk
    space.fill(leave=3 * MiB)
    response = client.post(
        server.url,
        headers={**TUS, "Upload-Length": str(len(DATA)), "Content-Type": OCTET, **declaring_sha256(DATA)},
        content=DATA,
    )
    assert_storage_full(response)
    assert "location" in response.headers, "507 without Location: the stored bytes cannot be resumed or removed"
    url = response.headers["location"]
    offset = assert_consistent(client, server, url, len(DATA))
    assert 1 * MiB < offset <= 3 * MiB, offset

    space.free()
    assert patch(client, url, offset, DATA[offset:]).status_code == 204
    assert_complete(client, server, url, DATA)


def test_creation_on_a_full_disk_answers_507_and_leaves_nothing(
    disk: tuple[Disk, TusServer], client: httpx.Client
) -> None:
    # The .info of a new upload cannot be written: 507, and no orphan data file or
    # half-written temporary .info stays behind.
    space, server = disk
    tmpfs_only(space)
    before = only_uploads(server)
    space.fill(leave=0)
    for headers in ({"Upload-Length": "10"}, {"Upload-Defer-Length": "1"}):
        assert_storage_full(client.post(server.url, headers={**TUS, **headers}))
    assert only_uploads(server) == before

    space.free()
    url = create(client, server, 3, **declaring_sha256(DATA[:3]))
    assert patch(client, url, 0, DATA[:3]).status_code == 204
    assert_complete(client, server, url, DATA[:3])


def test_concatenation_on_a_full_disk_answers_507_and_leaves_nothing(
    disk: tuple[Disk, TusServer], client: httpx.Client
) -> None:
    # The final's bytes are assembled under a temporary name: when they do not fit, no final
    # upload and no partial file remain, the partials are intact, and a retry works.
    space, server = disk
    tmpfs_only(space)
    half = len(DATA) // 4
    partials = []
    for part in (DATA[:half], DATA[half : 2 * half]):
        response = client.post(
            server.url,
            headers={**TUS, "Upload-Length": str(len(part)), "Upload-Concat": "partial", "Content-Type": OCTET},
            content=part,
        )
        assert response.status_code == 201, response.text
        partials.append(response.headers["location"])
    before = only_uploads(server)
    space.fill(leave=1 * MiB)
    final = {**TUS, "Upload-Concat": "final;" + " ".join(partials), **declaring_sha256(DATA[: 2 * half])}
    assert_storage_full(client.post(server.url, headers=final))
    assert only_uploads(server) == before

    space.free()
    response = client.post(server.url, headers=final)
    assert response.status_code == 201, response.text
    assert_complete(client, server, response.headers["location"], DATA[: 2 * half])
