"""Authorization on every request, with our `pre-access` hook.

tusd runs hooks only at creation, so anyone who learns an upload URL can
resume, download or delete it (tus/tusd#669). tusd-py adds a blocking
`pre-access` hook for HEAD, PATCH, GET and DELETE of an existing upload, with
the upload and the request headers; `RejectAccess: true` answers 403
ERR_ACCESS_DENIED.

The server here runs `-hooks-enabled-events pre-create,pre-access` with two
example scripts from `tests/hooks/`: `owner-pre-create` records the creating
request's Authorization header as the upload's `owner` metadata (401 without
one), and `owner-pre-access` lets only requests with that same header in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import select
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, start_server
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="the example hook scripts use jq")

SCRIPTS = Path(__file__).parent / "hooks"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
NOBODY: dict[str, str] = {}
DATA = b"0123456789"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    root = tmp_path_factory.mktemp("access-hook")
    hooks = root / "hooks"
    hooks.mkdir()
    for script, event in (("owner-pre-create", "pre-create"), ("owner-pre-access", "pre-access")):
        shutil.copyfile(SCRIPTS / script, hooks / event)
        (hooks / event).chmod(0o755)
    srv = start_server(root / "uploads", "-hooks-dir", str(hooks), "-hooks-enabled-events", "pre-create,pre-access")
    yield srv
    srv.stop()


def metadata_header(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def error_code(response: httpx.Response) -> str:
    return response.text.split(":", 1)[0]


@dataclass
class Upload:
    server: TusServer
    url: str

    @property
    def id(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def files(self) -> dict[str, bytes]:
        """Everything on disk for this upload (data, .info, ...)."""
        return {p.name: p.read_bytes() for p in self.server.upload_dir.glob(f"{self.id}*") if p.is_file()}


def upload_as(client: httpx.Client, server: TusServer, who: dict[str, str], data: bytes, **headers: str) -> Upload:
    """An upload of len(DATA) bytes created by `who`, with `data` already sent."""
    response = client.post(
        server.url,
        headers={
            **TUS,
            **who,
            "Upload-Length": str(len(DATA)),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
        content=data,
    )
    assert response.status_code == 201, response.text
    return Upload(server, response.headers["location"])


def patch_as(client: httpx.Client, who: dict[str, str], url: str, offset: int, data: bytes) -> httpx.Response:
    headers = {**TUS, **who, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    return client.patch(url, headers=headers, content=data)


def test_creation_without_authorization_is_refused(guarded: TusServer, client: httpx.Client) -> None:
    before = set(guarded.upload_dir.iterdir())
    response = client.post(guarded.url, headers={**TUS, "Upload-Length": "10"})
    assert (response.status_code, response.text) == (401, "authorization required\n")
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(guarded.upload_dir.iterdir()) == before


def test_owner_comes_from_the_authorization_header_not_from_the_client(
    guarded: TusServer, client: httpx.Client
) -> None:
    upload = upload_as(
        client, guarded, BOB, b"", **{"Upload-Metadata": metadata_header({"owner": "Bearer alice-token"})}
    )
    info = json.loads(upload.files()[f"{upload.id}.info"])
    assert info["MetaData"]["owner"] == "Bearer bob-token"
    assert client.head(upload.url, headers={**TUS, **ALICE}).status_code == 403


def test_owner_can_head_resume_download_and_delete(guarded: TusServer, client: httpx.Client) -> None:
    upload = upload_as(client, guarded, ALICE, DATA[:4])
    response = client.head(upload.url, headers={**TUS, **ALICE})
    assert (response.status_code, response.headers["upload-offset"]) == (200, "4")
    assert patch_as(client, ALICE, upload.url, 4, DATA[4:]).status_code == 204
    download = client.get(upload.url, headers=ALICE)
    assert (download.status_code, download.content) == (200, DATA)
    assert client.delete(upload.url, headers={**TUS, **ALICE}).status_code == 204
    assert upload.files() == {}


@pytest.mark.parametrize(
    "who", [BOB, NOBODY, {"Authorization": "Bearer ALICE-TOKEN"}], ids=["bob", "nobody", "other-case"]
)
@pytest.mark.parametrize("method", ["HEAD", "PATCH", "GET", "DELETE", "DELETE-via-override"])
def test_anyone_else_is_denied_and_nothing_changes(
    guarded: TusServer, client: httpx.Client, who: dict[str, str], method: str
) -> None:
    # Each request would succeed for the owner: GET on a finished upload, the rest on one at 4 of 10.
    upload = upload_as(client, guarded, ALICE, DATA if method == "GET" else DATA[:4])
    before = upload.files()
    if method == "HEAD":
        response = client.head(upload.url, headers={**TUS, **who})
    elif method == "PATCH":
        response = patch_as(client, who, upload.url, 4, DATA[4:])
    elif method == "GET":
        response = client.get(upload.url, headers=who)
    elif method == "DELETE":
        response = client.delete(upload.url, headers={**TUS, **who})
    else:  # a method override must not dodge the check
        response = client.post(upload.url, headers={**TUS, **who, "X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 403
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "upload-offset" not in response.headers
    if method != "HEAD":
        assert error_code(response) == "ERR_ACCESS_DENIED"
        assert DATA[4:] not in response.content
    assert upload.files() == before
    # ...and the owner still sees it as it was.
    assert client.head(upload.url, headers={**TUS, **ALICE}).headers["upload-offset"] == str(
        len(DATA) if method == "GET" else 4
    )


def test_a_denied_request_does_not_interrupt_the_owners_upload(guarded: TusServer, client: httpx.Client) -> None:
    # Someone without access must not be able to break a running upload: the check comes
    # before the request competes for the upload's lock (which stops the running PATCH).
    size, chunk = 4000, b"z" * 400
    response = client.post(guarded.url, headers={**TUS, **ALICE, "Upload-Length": str(size)})
    url = response.headers["location"]
    request = (
        f"PATCH {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1:{guarded.port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: {ALICE['Authorization']}\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {size}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        sock.sendall(request.encode())
        for index in range(size // len(chunk)):
            if index == 3:  # Alice's PATCH is running: Bob tries his luck
                assert client.head(url, headers={**TUS, **BOB}).status_code == 403
                assert client.delete(url, headers={**TUS, **BOB}).status_code == 403
            answered, _, _ = select.select([sock], [], [], 0.05)  # pacing; an early answer ends it
            if answered:
                break
            sock.sendall(chunk)
        answer = sock.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 204"), answer
    assert client.head(url, headers={**TUS, **ALICE}).headers["upload-offset"] == str(size)


def test_concatenating_someone_elses_partial_is_denied(guarded: TusServer, client: httpx.Client) -> None:
    # A final upload reads its partials: building one from Alice's partial would hand Bob her bytes.
    partial = upload_as(client, guarded, ALICE, DATA, **{"Upload-Concat": "partial"})
    before = set(guarded.upload_dir.iterdir())
    response = client.post(guarded.url, headers={**TUS, **BOB, "Upload-Concat": f"final;{partial.url}"})
    assert response.status_code == 403, response.headers.get("location")
    assert error_code(response) == "ERR_ACCESS_DENIED"
    assert set(guarded.upload_dir.iterdir()) == before
    own = client.post(guarded.url, headers={**TUS, **ALICE, "Upload-Concat": f"final;{partial.url}"})
    assert own.status_code == 201
    assert client.get(own.headers["location"], headers=ALICE).content == DATA


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(hashlib.sha256(b"seed").digest() * 4096)  # 128 KiB
    return path


def test_tuspy_owner_resumes_and_another_user_cannot(guarded: TusServer, client: httpx.Client, photo: Path) -> None:
    chunk = 32 * 1024
    with open(photo, "rb") as stream:
        first = tus_client.TusClient(guarded.url, headers=ALICE).uploader(
            file_stream=stream, chunk_size=chunk, metadata={"filename": photo.name}
        )
        first.upload(stop_at=2 * chunk)
    url = first.url
    assert url is not None

    with open(photo, "rb") as stream:
        with pytest.raises(TusCommunicationError) as denied:
            tus_client.TusClient(guarded.url, headers=BOB).uploader(file_stream=stream, url=url, chunk_size=chunk)
    assert denied.value.status_code == 403

    with open(photo, "rb") as stream:
        second = tus_client.TusClient(guarded.url, headers=ALICE).uploader(
            file_stream=stream, url=url, chunk_size=chunk
        )
        assert second.offset == 2 * chunk
        second.upload()
    assert client.get(url, headers=ALICE).content == photo.read_bytes()
    assert client.get(url, headers=BOB).status_code == 403
