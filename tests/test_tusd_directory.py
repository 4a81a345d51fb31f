"""An upload directory written by tusd is served by tusd-py, and ours reads like tusd's.

tusd's filestore (pkg/filestore/filestore.go) keeps `<dir>/<id>` (the bytes)
and `<dir>/<id>.info`: Go's `json.Marshal` of `handler.FileInfo`
(pkg/handler/datastore.go), compact, struct fields in declaration order, map
keys sorted:

    {"ID":"…","Size":11,"SizeIsDeferred":false,"Offset":0,"MetaData":{"filename":"a.txt"},
     "IsPartial":false,"IsFinal":false,"PartialUploads":null,
     "Storage":{"InfoPath":"/abs/dir/<id>.info","Path":"/abs/dir/<id>","Type":"filestore"}}

The .info is written at creation (and when a deferred length is declared)
only, so its `Offset` is stale: the offset is the data file's size. A
deferred upload has `"Size":0,"SizeIsDeferred":true`. A final upload made by
concatenation has `"IsFinal":true,"PartialUploads":["<id>",…]`, its data file
the partials' bytes, and (still) `"Offset":0`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server

# handler.FileInfo's exported fields, in declaration order (what json.Marshal writes).
FILEINFO_FIELDS = (
    "ID",
    "Size",
    "SizeIsDeferred",
    "Offset",
    "MetaData",
    "IsPartial",
    "IsFinal",
    "PartialUploads",
    "Storage",
)


def go_json(value: Any) -> bytes:
    """Like Go's json.Marshal: compact, UTF-8, <, >, & escaped (the caller orders
    struct fields as declared and map keys sorted)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


@dataclass
class TusdUpload:
    id: str
    data: bytes  # what is on disk
    size: int | None  # None: deferred
    metadata: dict[str, str]
    is_partial: bool = False
    partials: tuple[str, ...] = ()

    def info(self, directory: Path) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Size": 0 if self.size is None else self.size,
            "SizeIsDeferred": self.size is None,
            "Offset": 0,  # stale, as tusd leaves it
            "MetaData": dict(sorted(self.metadata.items())),
            "IsPartial": self.is_partial,
            "IsFinal": bool(self.partials),
            "PartialUploads": list(self.partials) if self.partials else None,
            "Storage": {
                "InfoPath": str(directory / f"{self.id}.info"),
                "Path": str(directory / self.id),
                "Type": "filestore",
            },
        }

    def write(self, directory: Path) -> None:
        (directory / self.id).write_bytes(self.data)
        (directory / f"{self.id}.info").write_bytes(go_json(self.info(directory)))


def tusd_id() -> str:
    return secrets.token_hex(16)  # tusd's internal/uid: 16 random bytes, hex


UNFINISHED_REST = b"upload, done"
UNFINISHED = TusdUpload(tusd_id(), b"resumable ", 22, {"filename": "notes.txt", "filetype": "text/plain"})
FINISHED = TusdUpload(tusd_id(), b"hello world", 11, {"filename": "hello.txt", "filetype": "text/plain"})
DEFERRED = TusdUpload(tusd_id(), b"12345", None, {})
PARTIAL_1 = TusdUpload(tusd_id(), b"abc", 3, {}, is_partial=True)
PARTIAL_2 = TusdUpload(tusd_id(), b"defg", 4, {"part": "2"}, is_partial=True)
FINAL = TusdUpload(tusd_id(), b"abcdefg", 7, {"filename": "joined <&>.bin"}, partials=(PARTIAL_1.id, PARTIAL_2.id))
ALL = (UNFINISHED, FINISHED, DEFERRED, PARTIAL_1, PARTIAL_2, FINAL)


@pytest.fixture(scope="module")
def tusd_dir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    directory = (tmp_path_factory.mktemp("tusd-written") / "data").absolute()
    directory.mkdir()
    for upload in ALL:
        upload.write(directory)
    srv = start_server(directory)
    yield srv
    srv.stop()


def url_of(server: TusServer, upload: TusdUpload) -> str:
    return server.url + upload.id


def decoded_metadata(header: str | None) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (header or "").split(",")):
        key, _, value = item.strip().partition(" ")
        pairs[key] = base64.b64decode(value).decode()
    return pairs


def sha256_repr_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


# tusd declares no digests, so none is known until a client asks for one (RFC 9530 section 4).
WANT_SHA256 = {"Want-Repr-Digest": "sha-256=10"}


def test_the_fixture_writes_what_tusd_writes(tusd_dir_server: TusServer) -> None:
    # Pin the fixture itself to Go's byte layout (for FINAL: sorted maps, escaped <&>).
    raw = (tusd_dir_server.upload_dir / f"{FINAL.id}.info").read_bytes()
    assert raw.startswith(f'{{"ID":"{FINAL.id}","Size":7,"SizeIsDeferred":false,"Offset":0,'.encode())
    assert b'"MetaData":{"filename":"joined \\u003c\\u0026\\u003e.bin"},"IsPartial":false,"IsFinal":true,' in raw
    assert f'"PartialUploads":["{PARTIAL_1.id}","{PARTIAL_2.id}"],"Storage":{{"InfoPath":'.encode() in raw
    assert b'"PartialUploads":null' in (tusd_dir_server.upload_dir / f"{FINISHED.id}.info").read_bytes()


def test_unfinished_tusd_upload_resumes_from_its_data_size(tusd_dir_server: TusServer, client: httpx.Client) -> None:
    url = url_of(tusd_dir_server, UNFINISHED)
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == str(len(UNFINISHED.data))  # the file, not the stale .info
    assert response.headers["upload-length"] == "22"
    assert decoded_metadata(response.headers.get("upload-metadata")) == UNFINISHED.metadata
    assert "upload-expires" in response.headers
    assert client.get(url).status_code == 404  # not finished yet

    response = patch(client, url, len(UNFINISHED.data), UNFINISHED_REST)
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "22"
    whole = UNFINISHED.data + UNFINISHED_REST
    download = client.get(url, headers=WANT_SHA256)
    assert download.status_code == 200
    assert download.content == whole
    assert download.headers["content-type"].startswith("text/plain")
    # The digest covers the bytes tusd wrote as well as ours.
    assert download.headers["repr-digest"] == sha256_repr_digest(whole)
    assert (tusd_dir_server.upload_dir / UNFINISHED.id).read_bytes() == whole


def test_finished_tusd_upload_heads_and_downloads(tusd_dir_server: TusServer, client: httpx.Client) -> None:
    url = url_of(tusd_dir_server, FINISHED)
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "11"
    assert response.headers["upload-length"] == "11"
    assert "upload-expires" not in response.headers  # complete uploads never expire
    assert decoded_metadata(response.headers.get("upload-metadata")) == FINISHED.metadata
    assert "repr-digest" not in response.headers  # tusd recorded none, and none was asked for
    download = client.get(url)
    assert download.status_code == 200
    assert download.content == b"hello world"
    assert "repr-digest" not in download.headers
    assert 'filename="hello.txt"' in download.headers["content-disposition"]
    wanted = client.get(url, headers=WANT_SHA256)
    assert wanted.status_code == 200 and wanted.content == b"hello world"
    assert wanted.headers["repr-digest"] == sha256_repr_digest(b"hello world")  # computed on demand
    # ... and recorded, in a .info tusd still reads.
    assert head(client, url).headers["repr-digest"] == sha256_repr_digest(b"hello world")
    assert_go_fileinfo(read_info(tusd_dir_server, url), tusd_dir_server.upload_dir.absolute())
    assert patch(client, url, 11, b"").status_code == 204
    assert patch(client, url, 11, b"x").status_code == 413


def test_deferred_tusd_upload_takes_its_length_and_finishes(tusd_dir_server: TusServer, client: httpx.Client) -> None:
    url = url_of(tusd_dir_server, DEFERRED)
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-defer-length"] == "1"
    assert "upload-length" not in response.headers
    assert response.headers["upload-offset"] == "5"
    response = patch(client, url, 5, b"6789", **{"Upload-Length": "9"})
    assert response.status_code == 204
    response = head(client, url)
    assert response.headers["upload-length"] == "9"
    assert response.headers["upload-offset"] == "9"
    assert "upload-defer-length" not in response.headers
    assert client.get(url).content == b"123456789"


def test_tusd_partials_and_final_are_served(tusd_dir_server: TusServer, client: httpx.Client) -> None:
    for partial in (PARTIAL_1, PARTIAL_2):
        response = head(client, url_of(tusd_dir_server, partial))
        assert response.status_code == 200
        assert response.headers["upload-concat"] == "partial"
        assert response.headers["upload-offset"] == str(len(partial.data))
    url = url_of(tusd_dir_server, FINAL)
    response = head(client, url)
    assert response.status_code == 200
    expected_concat = f"final;{url_of(tusd_dir_server, PARTIAL_1)} {url_of(tusd_dir_server, PARTIAL_2)}"
    assert response.headers["upload-concat"] == expected_concat
    assert response.headers["upload-length"] == "7"
    assert response.headers["upload-offset"] == "7"  # the data file, not the stale "Offset":0
    assert decoded_metadata(response.headers.get("upload-metadata")) == FINAL.metadata
    download = client.get(url)
    assert download.status_code == 200
    assert download.content == b"abcdefg"
    assert patch(client, url, 7, b"").status_code == 403  # T-CON-11: a final upload is never patched


def test_tusd_partials_concatenate_into_a_new_final(tusd_dir_server: TusServer, client: httpx.Client) -> None:
    parts = f"{url_of(tusd_dir_server, PARTIAL_2)} /files/{PARTIAL_1.id}"
    response = client.post(tusd_dir_server.url, headers={**TUS, "Upload-Concat": f"final;{parts}"})
    assert response.status_code == 201
    assert client.get(response.headers["location"]).content == b"defgabc"


def test_tusd_upload_can_be_terminated(tusd_dir_server: TusServer, client: httpx.Client) -> None:
    victim = TusdUpload(tusd_id(), b"bye", 10, {})
    victim.write(tusd_dir_server.upload_dir)
    url = url_of(tusd_dir_server, victim)
    assert client.delete(url, headers=TUS).status_code == 204
    assert head(client, url).status_code == 404
    assert not (tusd_dir_server.upload_dir / victim.id).exists()
    assert not (tusd_dir_server.upload_dir / f"{victim.id}.info").exists()


# --- and the other way round: our .info reads like tusd's -----------------------------------------------


def assert_go_fileinfo(doc: Any, directory: Path) -> None:
    """`doc` decodes into handler.FileInfo exactly as tusd's own would."""
    assert isinstance(doc, dict)
    assert tuple(doc)[: len(FILEINFO_FIELDS)] == FILEINFO_FIELDS
    # Go matches JSON keys case-insensitively: an extra key must not shadow a tusd field.
    extra = [key for key in doc if key not in FILEINFO_FIELDS]
    assert not {key.lower() for key in extra} & {key.lower() for key in FILEINFO_FIELDS}, extra
    assert isinstance(doc["ID"], str)
    for name in ("Size", "Offset"):
        assert type(doc[name]) is int and doc[name] >= 0, name  # int64: no floats, no bools
    for name in ("SizeIsDeferred", "IsPartial", "IsFinal"):
        assert type(doc[name]) is bool, name
    assert isinstance(doc["MetaData"], dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in doc["MetaData"].items())
    assert doc["PartialUploads"] is None or (
        isinstance(doc["PartialUploads"], list) and all(isinstance(p, str) for p in doc["PartialUploads"])
    )
    assert doc["Storage"] == {
        "Type": "filestore",
        "Path": str(directory / doc["ID"]),
        "InfoPath": str(directory / f"{doc['ID']}.info"),
    }


def read_info(server: TusServer, url: str) -> dict[str, Any]:
    return json.loads((server.upload_dir / (url.rsplit("/", 1)[1] + ".info")).read_bytes())


def test_our_info_files_read_like_tusds(server: TusServer, client: httpx.Client) -> None:
    directory = server.upload_dir.absolute()
    metadata = "filename " + base64.b64encode("ünïcode <&>.txt".encode()).decode() + ",empty"
    plain = create(client, server, 5, **{"Upload-Metadata": metadata})
    deferred = create(client, server, None)
    declared = create(client, server, None)
    assert patch(client, declared, 0, b"ab", **{"Upload-Length": "4"}).status_code == 204
    partial_a = create(client, server, 2, **{"Upload-Concat": "partial"})
    partial_b = create(client, server, 1, **{"Upload-Concat": "partial"})
    assert patch(client, partial_a, 0, b"xy").status_code == 204
    assert patch(client, partial_b, 0, b"z").status_code == 204
    response = client.post(server.url, headers={**TUS, "Upload-Concat": f"final;{partial_a} {partial_b}"})
    assert response.status_code == 201
    final = response.headers["location"]
    with_body = client.post(
        server.url,
        content=b"abc",
        headers={**TUS, "Upload-Length": "3", "Content-Type": "application/offset+octet-stream"},
    )
    assert with_body.status_code == 201

    docs = {
        name: read_info(server, url)
        for name, url in [
            ("plain", plain),
            ("deferred", deferred),
            ("declared", declared),
            ("partial", partial_a),
            ("final", final),
            ("with_body", with_body.headers["location"]),
        ]
    }
    for doc in docs.values():
        assert_go_fileinfo(doc, directory)

    assert docs["plain"]["MetaData"] == {"filename": "ünïcode <&>.txt", "empty": ""}
    assert (docs["plain"]["Size"], docs["plain"]["SizeIsDeferred"]) == (5, False)
    assert (docs["deferred"]["Size"], docs["deferred"]["SizeIsDeferred"]) == (0, True)
    assert (docs["declared"]["Size"], docs["declared"]["SizeIsDeferred"]) == (4, False)
    assert docs["deferred"]["MetaData"] == {}
    assert docs["plain"]["PartialUploads"] is None
    assert (docs["partial"]["IsPartial"], docs["partial"]["IsFinal"], docs["partial"]["PartialUploads"]) == (
        True,
        False,
        None,
    )
    assert (docs["final"]["IsPartial"], docs["final"]["IsFinal"]) == (False, True)
    assert docs["final"]["PartialUploads"] == [partial_a.rsplit("/", 1)[1], partial_b.rsplit("/", 1)[1]]
    assert docs["final"]["Size"] == 3
    # tusd takes the offset from the data file; whatever "Offset" says must not exceed it.
    for name, url in [("plain", plain), ("declared", declared), ("final", final)]:
        data_size = (server.upload_dir / url.rsplit("/", 1)[1]).stat().st_size
        assert docs[name]["Offset"] <= data_size, name


@pytest.mark.parametrize(
    "fields",
    [
        {"MetaData": None},  # a nil map marshals as null
        {"Storage": None},
        {"PartialUploads": []},
    ],
)
def test_tusd_info_variants_are_served(tusd_dir_server: TusServer, client: httpx.Client, fields: dict) -> None:
    upload = TusdUpload(tusd_id(), b"1234", 6, {})
    directory = tusd_dir_server.upload_dir
    doc = {**upload.info(directory), **fields}
    (directory / upload.id).write_bytes(upload.data)
    (directory / f"{upload.id}.info").write_bytes(go_json(doc))
    url = url_of(tusd_dir_server, upload)
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "4"
    assert response.headers["upload-length"] == "6"
    assert "upload-metadata" not in response.headers
    assert patch(client, url, 4, b"56").status_code == 204
    assert client.get(url).content == b"123456"
