"""tuspy as applications use it: resuming through its URL storage, and retries
across a server restart. (Plain chunked/checksummed uploads and resuming from a
known URL are in test_tuspy.py.)
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from conftest import TusServer, head
from restarts import EVENT_TIMEOUT, Restarter
from tusclient import client as tus_client
from tusclient.fingerprint.fingerprint import Fingerprint
from tusclient.storage.filestorage import FileStorage

KiB = 1 << 10
MiB = 1 << 20
CHUNK = 256 * KiB
METADATA = {"filename": "scan.pdf", "filetype": "application/pdf"}


class _KeptOpen(io.BufferedReader):
    """tuspy closes the stream it fingerprints (`with self.get_file_stream()`), which breaks
    `file_stream=` with `store_url=True`; and `file_path=` leaks a file per request. So: a
    stream whose close() waits for ours."""

    def close(self) -> None:
        pass


@contextmanager
def open_for_tuspy(path: Path) -> Iterator[io.BufferedReader]:
    stream = _KeptOpen(io.FileIO(path, "rb"))
    try:
        yield stream
    finally:
        io.BufferedReader.close(stream)


@contextmanager
def url_storage(path: Path) -> Iterator[FileStorage]:
    storage = FileStorage(str(path))
    try:
        yield storage
    finally:
        storage.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "scan.pdf"
    path.write_bytes(random.Random(21).randbytes(3 * MiB + 999))
    return path


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """(method, headers) of every request tuspy sends (it calls requests.post/head/patch)."""
    seen: list[tuple[str, dict[str, str]]] = []
    for name in ("post", "head", "patch"):
        real = getattr(requests, name)

        def recording(*args: Any, _real: Callable[..., Any] = real, _name: str = name, **kwargs: Any) -> Any:
            seen.append((_name.upper(), {k.lower(): v for k, v in kwargs.get("headers", {}).items()}))
            return _real(*args, **kwargs)

        monkeypatch.setattr(requests, name, recording)
    return seen


def stored_bytes(server: TusServer, url: str) -> bytes:
    return (server.upload_dir / url.rsplit("/", 1)[1]).read_bytes()


def stored_info(server: TusServer, url: str) -> dict[str, Any]:
    return json.loads((server.upload_dir / (url.rsplit("/", 1)[1] + ".info")).read_text())


def test_second_uploader_resumes_from_file_storage_by_fingerprint(
    server: TusServer,
    client: httpx.Client,
    tmp_path: Path,
    source: Path,
    sent: list[tuple[str, dict[str, str]]],
) -> None:
    # T-CORE-9, T-CHK-2: the URL is found again by the file's fingerprint (as after the client program
    # restarted); the upload continues at the server's offset, no new upload is created.
    size = source.stat().st_size
    half = 6 * CHUNK  # about half the file
    storage_path = tmp_path / "tus-urls.json"
    options: dict[str, Any] = dict(chunk_size=CHUNK, metadata=METADATA, upload_checksum=True, store_url=True)

    with open_for_tuspy(source) as stream, url_storage(storage_path) as storage:
        first = tus_client.TusClient(server.url).uploader(file_stream=stream, url_storage=storage, **options)
        first.upload(stop_at=half)
        stream.seek(0)
        fingerprint = Fingerprint().get_fingerprint(stream)
    assert first.url is not None
    assert head(client, first.url).headers["upload-offset"] == str(half)
    with url_storage(storage_path) as storage:
        assert storage.get_item(fingerprint) == first.url

    sent.clear()
    with open_for_tuspy(source) as stream, url_storage(storage_path) as storage:
        second = tus_client.TusClient(server.url).uploader(file_stream=stream, url_storage=storage, **options)
        assert (second.url, second.offset) == (first.url, half)  # HEAD asked the server
        second.upload()

    assert [method for method, _ in sent].count("POST") == 0
    patches = [headers for method, headers in sent if method == "PATCH"]
    assert patches[0]["upload-offset"] == str(half)
    assert all(h["upload-checksum"].startswith("sha1 ") for h in patches)
    assert stored_bytes(server, first.url) == source.read_bytes()
    assert stored_info(server, first.url)["MetaData"] == METADATA
    response = head(client, first.url)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(size)


class _BodyPausedHalfWay:
    """A PATCH body (Content-Length kept: requests takes len(), urllib3 calls read())
    that, half-way through, has the server stopped and waits until it is down."""

    def __init__(self, data: bytes, restarter: Restarter) -> None:
        self.data = data
        self.position = 0
        self.pause_at = len(data) // 2
        self.restarter = restarter

    def __len__(self) -> int:
        return len(self.data)

    def read(self, size: int = -1) -> bytes:
        if self.position == self.pause_at and not self.restarter.trigger.is_set():
            self.restarter.trigger.set()
            assert self.restarter.stopped.wait(EVENT_TIMEOUT)
        end = len(self.data) if size < 0 else self.position + size
        if self.position < self.pause_at:
            end = min(end, self.pause_at)
        block = self.data[self.position : end]
        self.position += len(block)
        return block


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "checksummed"])
def test_retries_carry_the_upload_across_a_server_restart(
    make_server: Callable[..., TusServer],
    tmp_path: Path,
    source: Path,
    monkeypatch: pytest.MonkeyPatch,
    sent: list[tuple[str, dict[str, str]]],
    checksum: bool,
) -> None:
    # T-CORE-22, T-CORE-23, T-CHK-5: the server gets SIGTERM while a PATCH body is half
    # sent (offset past ~40%): that request fails (503 or a broken connection), tuspy waits,
    # HEADs (refused until the server is back on the same port and directory) and
    # continues from the stored offset.
    data = source.read_bytes()
    size = len(data)
    server = make_server()
    restarter = Restarter(make_server, server)
    restarter.start()

    recording_patch = requests.patch  # the `sent` recorder

    def patch_pausing_past_40_percent(url: str, data: bytes, **kwargs: Any) -> Any:
        offset = int(kwargs["headers"]["upload-offset"])
        if not restarter.trigger.is_set() and offset + len(data) // 2 > 0.4 * size:
            return recording_patch(url, data=_BodyPausedHalfWay(data, restarter), **kwargs)
        return recording_patch(url, data=data, **kwargs)

    monkeypatch.setattr(requests, "patch", patch_pausing_past_40_percent)
    with open_for_tuspy(source) as stream:
        uploader = tus_client.TusClient(server.url).uploader(
            file_stream=stream,
            chunk_size=CHUNK,
            metadata=METADATA,
            upload_checksum=checksum,
            retries=10,
            retry_delay=0.5,
        )
        uploader.upload()
    restarted = restarter.finish()
    assert restarted.port == server.port

    patches = [int(headers["upload-offset"]) for method, headers in sent if method == "PATCH"]
    interrupted = next(i for i, offset in enumerate(patches) if offset + CHUNK // 2 > 0.4 * size)
    failed_at, resumed_at = patches[interrupted], patches[interrupted + 1]
    assert [method for method, _ in sent].count("POST") == 1  # the upload was never re-created
    assert any(method == "HEAD" for method, _ in sent)  # the offset was asked again
    if checksum:
        assert resumed_at == failed_at  # a checksummed request that did not finish keeps nothing
    else:
        assert failed_at <= resumed_at <= failed_at + CHUNK // 2  # kept what arrived
    assert uploader.url is not None
    assert stored_bytes(restarted, uploader.url) == data
    with httpx.Client(timeout=10.0) as client:
        response = head(client, uploader.url)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(size)
