"""Crash safety: `kill -9` the server while 20 uploads are mid-flight, restart it on
the same directory, and check that nothing acknowledged was lost and nothing
unverified was counted. Three crashes in a row, then every upload completes.

After each crash, for every upload:
- HEAD offset == data file size, and >= the last offset the client was acknowledged;
- the stored bytes are exactly the upload's first `offset` bytes;
- every .info file is whole JSON (written atomically, never half);
- no `<id>.rollback` marker survives a HEAD;
- uploads whose PATCHes carry Upload-Checksum sit at a PATCH boundary: bytes of a
  checksummed request that never finished are not counted (T-CHK-5).
Acknowledged bytes are T-CORE-18/20: a 204 with Upload-Offset N means N bytes are stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import TUS, TusServer

KiB = 1 << 10
MiB = 1 << 20
PATCH_SIZE = 512 * KiB  # checksummed uploads and half of the others
BIG_PATCH_SIZE = 3 * PATCH_SIZE  # the other half: a cut leaves part of a PATCH on disk
UPLOADS = 20
CRASHES = 3
KILL_AT = 0.3  # kill once this share of the bytes still missing at the start of a round was acknowledged
ROUND_TIMEOUT = 20.0


@dataclass
class Upload:
    id: str
    data: bytes
    checksum: bool  # every PATCH carries Upload-Checksum: sha1
    deferred: bool  # created with Upload-Defer-Length: 1, length declared on the last PATCH
    chunked: bool  # PATCH bodies sent with Transfer-Encoding: chunked
    patch_size: int = PATCH_SIZE  # PATCHes end at multiples of this
    acked: int = 0  # the last offset the server acknowledged with 204

    @property
    def length(self) -> int:
        return len(self.data)


# Every combination appears; 20 uploads cycle through them.
MODES = [
    {"checksum": False, "deferred": False, "chunked": False},
    {"checksum": True, "deferred": False, "chunked": False},
    {"checksum": False, "deferred": True, "chunked": False},
    {"checksum": False, "deferred": False, "chunked": True},
    {"checksum": True, "deferred": False, "chunked": True},
    {"checksum": True, "deferred": True, "chunked": False},
    {"checksum": False, "deferred": True, "chunked": True},
]


class Progress:
    """Bytes acknowledged in this round, shared by the uploader threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n


def create_uploads(server: TusServer) -> list[Upload]:
    uploads = []
    with httpx.Client(timeout=10.0) as client:
        for i in range(UPLOADS):
            rng = random.Random(5000 + i)
            upload = Upload("", rng.randbytes(rng.randrange(4 * MiB, 8 * MiB)), **MODES[i % len(MODES)])
            if not upload.checksum and i % 2:
                upload.patch_size = BIG_PATCH_SIZE
            length = {"Upload-Defer-Length": "1"} if upload.deferred else {"Upload-Length": str(upload.length)}
            headers = {**TUS, **length}
            response = client.post(server.url, headers=headers)
            assert response.status_code == 201, response.text
            upload.id = response.headers["location"].rsplit("/", 1)[1]
            uploads.append(upload)
    return uploads


def pieces(body: bytes) -> Iterator[bytes]:
    """A generator body: httpx sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), 64 * KiB):
        yield body[start : start + 64 * KiB]


def push(server: TusServer, upload: Upload, progress: Progress) -> None:
    """PATCH from `upload.acked` to the end, one piece per PATCH ending at a
    multiple of `patch_size`, until done or the server is gone."""
    with httpx.Client(timeout=ROUND_TIMEOUT) as client:
        while upload.acked < upload.length:
            start = upload.acked
            end = min(start - start % upload.patch_size + upload.patch_size, upload.length)
            body = upload.data[start:end]
            headers = {**TUS, "Upload-Offset": str(start), "Content-Type": "application/offset+octet-stream"}
            if upload.checksum:
                headers["Upload-Checksum"] = "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()
            if upload.deferred and end == upload.length:
                headers["Upload-Length"] = str(upload.length)
            try:
                response = client.patch(
                    server.url + upload.id, content=pieces(body) if upload.chunked else body, headers=headers
                )
            except httpx.TransportError:  # killed under our feet
                return
            assert response.status_code == 204, response.text
            assert response.headers["upload-offset"] == str(end)
            upload.acked = end
            progress.add(end - start)


def run_round(server: TusServer, uploads: list[Upload], kill_after: int | None) -> None:
    """All uploads at once; SIGKILL the server once `kill_after` more bytes were acknowledged."""
    progress = Progress()
    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        futures = [pool.submit(push, server, upload, progress) for upload in uploads]
        if kill_after is not None:
            deadline = time.monotonic() + ROUND_TIMEOUT
            while progress.bytes < kill_after and time.monotonic() < deadline:
                assert not all(f.done() for f in futures), "uploads ended before the crash"
                time.sleep(0.005)
            assert progress.bytes >= kill_after, "uploads too slow"
            assert sum(not f.done() for f in futures) >= len(uploads) // 2  # uploads really are mid-flight
            server.process.kill()  # SIGKILL: no cleanup of any kind
            server.process.wait(timeout=10)
        for future in futures:
            future.result(timeout=ROUND_TIMEOUT)  # re-raises assertion errors from the threads


def assert_info_files_are_whole_json(upload_dir: Path, uploads: list[Upload]) -> None:
    for upload in uploads:
        info = json.loads((upload_dir / f"{upload.id}.info").read_bytes())
        assert info["ID"] == upload.id
        assert info["SizeIsDeferred"] in (True, False)
    for path in upload_dir.glob("*.info"):
        json.loads(path.read_bytes())


def check_and_resync(server: TusServer, uploads: list[Upload]) -> None:
    """After a restart: every upload's state is consistent; resume from HEAD's offset."""
    with httpx.Client(timeout=10.0) as client:
        for upload in uploads:
            response = client.head(server.url + upload.id, headers=TUS)
            assert response.status_code == 200, upload
            offset = int(response.headers["upload-offset"])
            path = server.upload_dir / upload.id
            what = f"{upload.id} (checksum={upload.checksum}, deferred={upload.deferred}, chunked={upload.chunked})"
            assert offset == path.stat().st_size, what
            assert offset >= upload.acked, f"{what}: acknowledged bytes lost ({offset} < {upload.acked})"
            assert not (server.upload_dir / f"{upload.id}.rollback").exists(), what
            if upload.checksum:  # unverified bytes of an unfinished request are not counted
                assert offset % PATCH_SIZE == 0 or offset == upload.length, f"{what}: offset {offset}"
            if upload.deferred and "upload-defer-length" in response.headers:
                assert response.headers["upload-defer-length"] == "1"
            else:
                assert response.headers["upload-length"] == str(upload.length), what
            with open(path, "rb") as f:
                assert f.read() == upload.data[:offset], f"{what}: stored bytes differ"
            upload.acked = offset


def test_uploads_survive_three_sigkills(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upload_dir = tmp_path / "crashing"
    server = make_server(upload_dir=upload_dir)
    uploads = create_uploads(server)
    for _ in range(CRASHES):
        missing = sum(upload.length - upload.acked for upload in uploads)
        run_round(server, uploads, kill_after=int(missing * KILL_AT))
        assert_info_files_are_whole_json(upload_dir, uploads)
        server = make_server(upload_dir=upload_dir)
        check_and_resync(server, uploads)
        assert_info_files_are_whole_json(upload_dir, uploads)

    run_round(server, uploads, kill_after=None)
    with httpx.Client(timeout=10.0) as client:
        for upload in uploads:
            response = client.head(server.url + upload.id, headers=TUS)
            assert response.headers["upload-offset"] == response.headers["upload-length"] == str(upload.length)
            path = upload_dir / upload.id
            assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(upload.data).digest()
            if "repr-digest" in response.headers:  # a whole-file digest survives the crashes too
                sha256 = base64.b64encode(hashlib.sha256(upload.data).digest()).decode()
                assert f"sha-256=:{sha256}:" in response.headers["repr-digest"]
            # Nothing of the crashes is left behind: no marker, no pending stop request.
            assert not (upload_dir / f"{upload.id}.rollback").exists()
            assert not (upload_dir / f"{upload.id}.stop").exists()
