"""tuspy, the tus Python client, against the real server: upload, checksums, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
import requests
from conftest import TusServer, head
from tusclient import client as tus_client

SIZE = 3 * 1024 * 1024 + 12345  # not a multiple of the chunk size
CHUNK = 512 * 1024


@pytest.fixture
def random_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(random.Random(4).randbytes(SIZE))
    return path


def stored_bytes(server: TusServer, url: str) -> bytes:
    return (server.upload_dir / url.rsplit("/", 1)[1]).read_bytes()


def stored_info(server: TusServer, url: str) -> dict:
    return json.loads((server.upload_dir / (url.rsplit("/", 1)[1] + ".info")).read_text())


@pytest.fixture
def sent_patches(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The headers of every PATCH tuspy sends (it calls `requests.patch`)."""
    sent: list[dict[str, str]] = []
    real_patch = requests.patch

    def recording_patch(*args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(dict(kwargs["headers"]))
        return real_patch(*args, **kwargs)

    monkeypatch.setattr(requests, "patch", recording_patch)
    return sent


def test_tuspy_upload_with_metadata_and_checksums(
    server: TusServer, client: httpx.Client, random_file: Path, sent_patches: list[dict[str, str]]
) -> None:
    # Several checksummed PATCHes (tuspy sends `Upload-Checksum: sha1 ...` on each).
    metadata = {"filename": random_file.name, "filetype": "image/jpeg"}
    with open(random_file, "rb") as stream:
        uploader = tus_client.TusClient(server.url).uploader(
            file_stream=stream, chunk_size=CHUNK, metadata=metadata, upload_checksum=True
        )
        assert uploader.checksum_algorithm_name == "sha1"
        uploader.upload()
    url = uploader.url
    assert url is not None
    assert len(sent_patches) == -(-SIZE // CHUNK)
    assert all(h["upload-checksum"].startswith("sha1 ") for h in sent_patches)
    assert stored_bytes(server, url) == random_file.read_bytes()
    assert stored_info(server, url)["MetaData"] == metadata
    response = head(client, url)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(SIZE)


def test_tuspy_resumes_with_a_new_uploader(server: TusServer, client: httpx.Client, random_file: Path) -> None:
    # A second uploader given the URL asks the server for the offset (HEAD) and finishes.
    stop_at = 5 * CHUNK // 2
    with open(random_file, "rb") as stream:
        first = tus_client.TusClient(server.url).uploader(file_stream=stream, chunk_size=CHUNK, upload_checksum=True)
        first.upload(stop_at=stop_at)
    url = first.url
    assert url is not None
    assert head(client, url).headers["upload-offset"] == str(stop_at)
    assert stored_bytes(server, url) == random_file.read_bytes()[:stop_at]

    with open(random_file, "rb") as stream:
        second = tus_client.TusClient(server.url).uploader(
            file_stream=stream, url=url, chunk_size=CHUNK, upload_checksum=True
        )
        assert second.offset == stop_at
        second.upload()
    assert stored_bytes(server, url) == random_file.read_bytes()
    assert head(client, url).headers["upload-offset"] == str(SIZE)
