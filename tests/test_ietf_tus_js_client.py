"""tus-js-client 4 speaking the IETF draft under Node against the real server.

tus-js-client 4.3.1 offers `protocol: 'ietf-draft-03'` (it sends interop version 5) and
`'ietf-draft-05'` (interop 6; PATCHes with `application/partial-upload`). The scripts
`tests/js/upload.mjs` and `resume.mjs`, given that `protocol` option, run one scenario each and
print every request sent and response received (with the draft's header fields) as JSON; the
server's side is checked here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TusServer, head
from nodejs import run_node, write_random_file

KiB = 1 << 10
MiB = 1 << 20
PROTOCOLS = {"ietf-draft-03": "5", "ietf-draft-05": "6"}


def stored(server: TusServer, url: str) -> bytes:
    return (server.upload_dir / url.rsplit("/", 1)[1]).read_bytes()


def stored_info(server: TusServer, url: str) -> dict[str, Any]:
    return json.loads((server.upload_dir / (url.rsplit("/", 1)[1] + ".info")).read_text())


def methods(log: dict[str, Any]) -> list[str]:
    return [request["method"] for request in log["requests"]]


def assert_speaks_the_draft(log: dict[str, Any], protocol: str) -> None:
    """Every request carries the interop version and no Tus-Resumable; every PATCH of
    ietf-draft-05 is application/partial-upload (I-VER-1, I-APP-1)."""
    for request in log["requests"]:
        assert request["headers"]["Upload-Draft-Interop-Version"] == PROTOCOLS[protocol]
        assert "Tus-Resumable" not in request["headers"]
        if request["method"] == "PATCH":
            assert "Upload-Complete" in request["headers"]
            if protocol == "ietf-draft-05":
                assert request["headers"]["Content-Type"] == "application/partial-upload"
    for response in log["responses"]:
        assert 200 <= response["status"] < 300, response


def assert_complete_on_the_server(client: httpx.Client, server: TusServer, url: str, data: bytes, version: str) -> None:
    state = client.head(url, headers={"Upload-Draft-Interop-Version": version})
    assert state.status_code == 204
    assert state.headers["upload-complete"] == "?1"
    assert state.headers["upload-offset"] == state.headers["upload-length"] == str(len(data))
    tus_state = head(client, url)  # the other protocol sees the same upload
    assert tus_state.headers["upload-offset"] == tus_state.headers["upload-length"] == str(len(data))
    assert stored(server, url) == data
    assert client.get(url).content == data


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_abort_then_resume_from_url_storage(
    server: TusServer, client: httpx.Client, tmp_path: Path, protocol: str
) -> None:
    # Careful creation (empty POST, Upload-Complete: ?0), appends, an abort mid-way; a new
    # Upload finds the stored URL, retrieves the offset with HEAD (I-OFF-1) and appends from it.
    size = 3 * MiB + 4321
    source = tmp_path / "video.bin"
    data = write_random_file(source, size, seed=21)
    storage = tmp_path / "tus-urls.json"
    result = run_node("resume.mjs", server.url, str(source), str(storage), str(256 * KiB), protocol)

    first, second = result["first"], result["second"]
    assert_speaks_the_draft(first, protocol)
    assert_speaks_the_draft(second, protocol)
    creation = first["requests"][0]
    assert creation["method"] == "POST"
    assert creation["headers"]["Upload-Complete"] == "?0"
    assert creation["headers"]["Upload-Length"] == str(size)
    assert first["responses"][0]["status"] == 201
    assert first["responses"][0]["headers"]["Upload-Complete"] == "?0"
    assert result["abortedAt"] > 0.3 * size
    assert result["previous"] == [result["firstUrl"]] and result["url"] == result["firstUrl"]

    assert "POST" not in methods(second)  # resumed, not re-created
    assert methods(second)[0] == "HEAD"
    retrieved = second["responses"][0]
    assert retrieved["status"] == 204 and retrieved["headers"]["Upload-Complete"] == "?0"
    resumed_at = int(retrieved["headers"]["Upload-Offset"])
    assert 0 < resumed_at < size
    patches = [request for request in second["requests"] if request["method"] == "PATCH"]
    assert int(patches[0]["headers"]["Upload-Offset"]) == resumed_at
    # With a stream source tus-js-client learns the end only after the last chunk went out, so
    # it never sends Upload-Complete: ?1: the upload completes by reaching its recorded length
    # (our model, as tusd's), and the last response says so.
    assert [p["headers"]["Upload-Complete"] for p in patches] == ["?0"] * len(patches)
    last = second["responses"][-1]
    assert last["headers"]["Upload-Complete"] == "?1"
    assert last["headers"]["Upload-Offset"] == str(size)

    assert_complete_on_the_server(client, server, result["url"], data, PROTOCOLS[protocol])
    assert stored_info(server, result["url"])["MetaData"] == {
        "filename": "video.bin",
        "filetype": "application/octet-stream",
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_upload_data_during_creation_is_one_complete_request(
    server: TusServer, client: httpx.Client, tmp_path: Path, protocol: str
) -> None:
    # I-CRE-4: the whole representation in the creation request with Upload-Complete: ?1.
    size = MiB + 99
    source = tmp_path / "small.bin"
    data = write_random_file(source, size, seed=22)
    result = run_node(
        "upload.mjs", server.url, str(source), json.dumps({"protocol": protocol, "uploadDataDuringCreation": True})
    )

    assert_speaks_the_draft(result, protocol)
    assert methods(result) == ["POST"]
    assert result["requests"][0]["headers"]["Upload-Complete"] == "?1"
    (response,) = result["responses"]
    assert response["status"] == 201
    assert response["headers"]["Upload-Complete"] == "?1"
    assert response["headers"]["Upload-Offset"] == str(size)
    assert_complete_on_the_server(client, server, result["url"], data, PROTOCOLS[protocol])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_deferred_length_is_recorded_by_the_completing_append(
    server: TusServer, client: httpx.Client, tmp_path: Path, protocol: str
) -> None:
    # I-APP-7: the last append carries Upload-Length with Upload-Complete: ?1 and the server records it.
    size = 2 * MiB + 7
    source = tmp_path / "stream.bin"
    data = write_random_file(source, size, seed=23)
    options = {"uploadLengthDeferred": True, "chunkSize": MiB}
    result = run_node("upload.mjs", server.url, str(source), json.dumps({"protocol": protocol, **options}))

    assert_speaks_the_draft(result, protocol)
    assert methods(result) == ["POST", "PATCH", "PATCH", "PATCH"]
    assert "Upload-Length" not in result["requests"][0]["headers"]
    creation = result["responses"][0]
    assert "Upload-Length" not in creation["headers"]
    if protocol == "ietf-draft-05":
        assert "max-size" not in creation["headers"]["Upload-Limit"]  # no length, no -max-size
    last = result["requests"][-1]
    assert last["headers"]["Upload-Length"] == str(size) and last["headers"]["Upload-Complete"] == "?1"
    assert [r["status"] for r in result["responses"]] == [201, 201, 201, 201]  # interop 5 and 6: 201
    assert_complete_on_the_server(client, server, result["url"], data, PROTOCOLS[protocol])
