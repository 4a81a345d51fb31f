"""Hostile upload ids never reach the filesystem.

Wire policy: a path id that is not `[A-Za-z0-9_-]{1,128}` answers 404 without touching the
filesystem. The only other acceptable answer is the HTTP parser's own 400 for a request line it
cannot parse (then the app never saw the request). Never 500, and no file inside or outside the
upload directory changes.

Traps are planted so that a server that *did* use the id as a path would find a valid-looking
upload there (and could read, write or delete it).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server

OCTET = "application/offset+octet-stream"
REAL = "{real}"  # replaced by the id of a real upload

HOSTILE_IDS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E/%2E%2E/etc/passwd",
    "../../etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5c..%5cetc%5cpasswd",
    "a%2Fb",
    "%00",
    "x%00",
    "a" * 129,
    "b" * 10 * 1024,
    "x.info",
    "abc.rollback",
    REAL + ".info",
    REAL + "%2Einfo",
    REAL + "/",
    REAL + "/..",
]
# httpx normalises dot segments, so these go over raw sockets only.
DOT_SEGMENT_IDS = {"..", ".", "../../etc/passwd", REAL + "/.."}


def _label(upload_id: str) -> str:
    return upload_id if len(upload_id) <= 40 else f"{upload_id[0]}*{len(upload_id)}"


@dataclass
class Trap:
    server: TusServer
    root: Path  # the directory that holds everything the server could reach by traversal
    real_id: str

    def snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.name.endswith(".log")
        }


def _info_doc(upload_id: str) -> str:
    return json.dumps(
        {
            "ID": upload_id,
            "Size": 100,
            "SizeIsDeferred": False,
            "Offset": 0,
            "MetaData": {},
            "IsPartial": False,
            "IsFinal": False,
            "PartialUploads": None,
            "Storage": {},
        }
    )


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trap]:
    root = tmp_path_factory.mktemp("hostile")
    upload_dir = root / "srv" / "uploads"
    server = start_server(upload_dir)
    try:
        with httpx.Client(timeout=10) as c:
            url = create(c, server, 10)
            assert patch(c, url, 0, b"real").status_code == 204
        real_id = url.rsplit("/", 1)[1]
        # Outside the upload dir: what `..`-style ids would reach.
        (root / "srv" / "sentinel.txt").write_text("outside the upload dir")
        (root / "etc").mkdir()
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "passwd.info").write_text(_info_doc("passwd"))
        # Inside: files a buggy server would take for the upload named by the hostile id.
        (upload_dir / "...info").write_text(_info_doc(".."))
        (upload_dir / "a").mkdir()
        (upload_dir / "a" / "b").write_bytes(b"")
        (upload_dir / "a" / "b.info").write_text(_info_doc("a/b"))
        for name in ("x.info", "abc.rollback"):
            (upload_dir / name).write_bytes(b"")
            (upload_dir / (name + ".info")).write_text(_info_doc(name))
        (upload_dir / (real_id + ".info.info")).write_text(_info_doc(real_id + ".info"))
        yield Trap(server, root, real_id)
    finally:
        server.stop()


# --- helpers -------------------------------------------------------------------------------


def raw_request(server: TusServer, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Tus-Resumable: 1.0.0", "Connection: close"]
    body = b""
    if method == "PATCH":
        body = b"abc"
        lines += [f"Content-Type: {OCTET}", "Upload-Offset: 0", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head_part, _, response_body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, response_body


def httpx_request(client: httpx.Client, server: TusServer, method: str, upload_id: str) -> httpx.Response:
    url = server.origin + "/files/" + upload_id
    if method == "PATCH":
        response = patch(client, url, 0, b"abc")
    else:
        response = client.request(method, url, headers=TUS)
    assert response.request.url.raw_path == f"/files/{upload_id}".encode(), "httpx rewrote the path"
    return response


def assert_refused(method: str, status: int, headers: dict[str, str], body: bytes) -> None:
    assert status in (400, 404), (status, body[:200])
    if status == 404:
        # The tus app answered: its normal not-found error.
        assert headers.get("tus-resumable") == "1.0.0"
        assert "upload-offset" not in headers
        if method != "HEAD":
            assert body.startswith(b"ERR_UPLOAD_NOT_FOUND: "), body[:200]
    else:
        # Only the HTTP parser may say 400 here; the app itself must not have seen the request.
        assert "tus-resumable" not in headers, body[:200]


def assert_untouched(trap: Trap, before: dict[str, bytes], client: httpx.Client) -> None:
    assert trap.snapshot() == before
    response = head(client, trap.server.url + trap.real_id)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "4"


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
@pytest.mark.parametrize("upload_id", HOSTILE_IDS, ids=_label)
def test_hostile_id_over_raw_socket(trap: Trap, client: httpx.Client, method: str, upload_id: str) -> None:
    before = trap.snapshot()
    status, headers, body = raw_request(trap.server, method, "/files/" + upload_id.replace(REAL, trap.real_id))
    assert_refused(method, status, headers, body)
    assert_untouched(trap, before, client)


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
@pytest.mark.parametrize("upload_id", [i for i in HOSTILE_IDS if i not in DOT_SEGMENT_IDS], ids=_label)
def test_hostile_id_over_httpx(trap: Trap, client: httpx.Client, method: str, upload_id: str) -> None:
    before = trap.snapshot()
    response = httpx_request(client, trap.server, method, upload_id.replace(REAL, trap.real_id))
    assert_refused(method, response.status_code, dict(response.headers), response.content)
    assert_untouched(trap, before, client)


@pytest.mark.parametrize("upload_id", ["a" * 128, "A-z_09", "-", "_"])
def test_well_formed_unknown_ids_are_plain_404(trap: Trap, client: httpx.Client, upload_id: str) -> None:
    # The id pattern's edges: well-formed but unknown ids are ordinary 404s.
    before = trap.snapshot()
    for response in (
        head(client, trap.server.url + upload_id),
        patch(client, trap.server.url + upload_id, 0, b"x"),
        client.delete(trap.server.url + upload_id, headers=TUS),
    ):
        assert response.status_code == 404
    assert_untouched(trap, before, client)
