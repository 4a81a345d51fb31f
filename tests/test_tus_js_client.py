"""tus-js-client 4 under Node against the real server.

The scripts in `tests/js/` use the package from the root `node_modules`
(`npm ci`), run one scenario and print what happened as JSON: the upload URL
and every request sent (`onBeforeRequest`) and response received
(`onAfterResponse`). The server's side is checked here: HEAD, stored bytes
and `.info`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from conftest import TusServer, head
from nodejs import run_node, write_random_file

KiB = 1 << 10
MiB = 1 << 20


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def stored_bytes(server: TusServer, url: str) -> bytes:
    return (server.upload_dir / upload_id(url)).read_bytes()


def stored_info(server: TusServer, url: str) -> dict[str, Any]:
    return json.loads((server.upload_dir / (upload_id(url) + ".info")).read_text())


def methods(log: dict[str, Any]) -> list[str]:
    return [request["method"] for request in log["requests"]]


def test_abort_then_resume_from_url_storage_with_a_new_upload(
    server: TusServer, client: httpx.Client, tmp_path: Path
) -> None:
    # T-CORE-9, T-CORE-16, T-CORE-23: resume = HEAD for the offset, then PATCH from there; no new upload.
    size = 3 * MiB + 4321
    source = tmp_path / "video.bin"
    data = write_random_file(source, size, seed=11)
    storage = tmp_path / "tus-urls.json"
    result = run_node("resume.mjs", server.url, str(source), str(storage), str(256 * KiB))

    first, second = result["first"], result["second"]
    assert methods(first)[0] == "POST"
    assert result["abortedAt"] > 0.3 * size
    assert result["previous"] == [result["firstUrl"]]  # FileUrlStorage kept the URL
    assert result["url"] == result["firstUrl"]

    assert "POST" not in methods(second)  # resumed, not re-created
    assert methods(second)[0] == "HEAD"
    patches = [request for request in second["requests"] if request["method"] == "PATCH"]
    resumed_at = int(patches[0]["headers"]["Upload-Offset"])
    assert 0 < resumed_at < size
    assert second["responses"][0]["offset"] == str(resumed_at)  # where HEAD said the upload was

    assert stored_bytes(server, result["url"]) == data
    assert stored_info(server, result["url"])["MetaData"] == {
        "filename": "video.bin",
        "filetype": "application/octet-stream",
    }
    response = head(client, result["url"])
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(size)


def test_parallel_uploads_are_concatenated_into_the_final_upload(
    server: TusServer, client: httpx.Client, tmp_path: Path
) -> None:
    # T-CON-2, T-CON-4, T-CON-5, T-CON-15: four partial uploads, then one final POST naming them in order.
    size = 3 * MiB + 77
    source = tmp_path / "big.bin"
    data = write_random_file(source, size, seed=12)
    options = {"parallelUploads": 4, "metadata": {"filename": "big.bin"}}
    result = run_node("upload.mjs", server.url, str(source), json.dumps(options))

    posts = [request for request in result["requests"] if request["method"] == "POST"]
    assert [p["headers"].get("Upload-Concat") for p in posts[:4]] == ["partial"] * 4
    assert posts[4]["headers"]["Upload-Concat"].startswith("final;")
    assert len(posts) == 5

    url = result["url"]
    response = head(client, url)
    assert response.status_code == 200
    concat = response.headers["upload-concat"]
    assert concat.startswith("final;")
    partial_urls = concat.removeprefix("final;").split()
    assert len(partial_urls) == 4
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(size)
    assert stored_bytes(server, url) == data
    assert b"".join(stored_bytes(server, partial) for partial in partial_urls) == data
    assert stored_info(server, url)["MetaData"] == {"filename": "big.bin"}
    assert all(head(client, partial).headers["upload-concat"] == "partial" for partial in partial_urls)


def test_override_patch_method_sends_post_with_x_http_method_override(
    server: TusServer, client: httpx.Client, tmp_path: Path
) -> None:
    # T-CORE-8: X-HTTP-Method-Override replaces the request method.
    size = 2 * MiB + 5
    source = tmp_path / "doc.bin"
    data = write_random_file(source, size, seed=13)
    options = {"overridePatchMethod": True, "chunkSize": MiB}
    result = run_node("upload.mjs", server.url, str(source), json.dumps(options))

    creation, *uploads = result["requests"]
    assert creation["method"] == "POST" and "X-HTTP-Method-Override" not in creation["headers"]
    assert len(uploads) == 3
    assert all(r["method"] == "POST" and r["headers"]["X-HTTP-Method-Override"] == "PATCH" for r in uploads)
    assert [r["status"] for r in result["responses"]] == [201, 204, 204, 204]
    assert [r["offset"] for r in result["responses"][1:]] == [str(MiB), str(2 * MiB), str(size)]
    assert stored_bytes(server, result["url"]) == data
    assert head(client, result["url"]).headers["upload-offset"] == str(size)


def test_upload_data_during_creation_sends_everything_in_the_post(
    server: TusServer, client: httpx.Client, tmp_path: Path
) -> None:
    # T-CWU-2, T-CWU-3: creation-with-upload answers 201 with the new Upload-Offset.
    size = MiB + 99
    source = tmp_path / "small.bin"
    data = write_random_file(source, size, seed=14)
    result = run_node("upload.mjs", server.url, str(source), json.dumps({"uploadDataDuringCreation": True}))

    assert methods(result) == ["POST"]
    assert result["requests"][0]["headers"]["Content-Type"] == "application/offset+octet-stream"
    responses = [{k: r[k] for k in ("method", "url", "status", "offset")} for r in result["responses"]]
    assert responses == [{"method": "POST", "url": server.url, "status": 201, "offset": str(size)}]
    assert stored_bytes(server, result["url"]) == data
    assert head(client, result["url"]).headers["upload-offset"] == str(size)
