"""Concatenation extension over HTTP: partial uploads joined by a final upload."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def relative(url: str) -> str:
    return urlsplit(url).path


def partial(
    client: httpx.Client, server: TusServer, data: bytes, *, finish: bool = True, metadata: str | None = None
) -> str:
    """A partial upload of len(data) bytes, filled with data unless finish=False."""
    headers = {"Upload-Concat": "partial"}
    if metadata is not None:
        headers["Upload-Metadata"] = metadata
    url = create(client, server, len(data), **headers)
    if finish:
        assert patch(client, url, 0, data).status_code == 204
    return url


def post_final(client: httpx.Client, server: TusServer, *urls: str, **headers: str) -> httpx.Response:
    return client.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(urls), **headers})


def decoded_metadata(header: str | None) -> dict[str, bytes]:
    if not header:
        return {}
    pairs = (pair.strip().split(" ") for pair in header.split(","))
    return {p[0]: base64.b64decode(p[1]) if len(p) > 1 else b"" for p in pairs}


def error_code(response: httpx.Response) -> str:
    return response.text.split(":", 1)[0]


@pytest.fixture
def hello_world(server: TusServer, client: httpx.Client) -> tuple[str, str]:
    """The spec example's two finished partials: `hello` and ` world`."""
    return partial(client, server, b"hello"), partial(client, server, b" world")


def test_spec_example(server: TusServer, client: httpx.Client, hello_world: tuple[str, str]) -> None:
    # T-CON-4, T-CON-5, T-CON-7, T-CON-12, T-CON-15, T-CON-16 (relative URLs).
    a, b = hello_world
    response = post_final(client, server, relative(a), relative(b))
    assert response.status_code == 201, response.text
    final = response.headers["location"]
    assert final.startswith(server.url)
    assert "upload-expires" not in response.headers  # complete on creation

    response = head(client, final)
    assert response.status_code == 200
    assert response.headers["upload-length"] == "11"
    assert response.headers["upload-offset"] == "11"
    kind, _, urls = response.headers["upload-concat"].partition(";")
    assert kind == "final"
    assert [relative(url) for url in urls.split(" ")] == [relative(a), relative(b)]
    assert (server.upload_dir / upload_id(final)).read_bytes() == b"hello world"

    info = json.loads((server.upload_dir / (upload_id(final) + ".info")).read_text())
    assert info["IsFinal"] is True and info["IsPartial"] is False
    assert info["PartialUploads"] == [upload_id(a), upload_id(b)]
    assert info["Size"] == 11


@pytest.mark.parametrize(
    "form",
    [
        lambda a, b: (a, b),  # absolute
        lambda a, b: (a, relative(b)),  # mixed
        lambda a, b: (relative(a), b),
    ],
    ids=["absolute", "absolute-relative", "relative-absolute"],
)
def test_partial_urls_absolute_or_mixed(server: TusServer, client: httpx.Client, hello_world, form) -> None:
    # T-CON-16: the URLs MAY be absolute or relative, and a list may mix both.
    response = post_final(client, server, *form(*hello_world))
    assert response.status_code == 201, response.text
    assert (server.upload_dir / upload_id(response.headers["location"])).read_bytes() == b"hello world"


def test_same_partial_may_repeat(server: TusServer, client: httpx.Client, hello_world: tuple[str, str]) -> None:
    # T-CON-10: the same partial may appear several times, and in several final uploads.
    a, b = hello_world
    first = post_final(client, server, a, a, b)
    assert first.status_code == 201, first.text
    assert (server.upload_dir / upload_id(first.headers["location"])).read_bytes() == b"hellohello world"
    assert head(client, first.headers["location"]).headers["upload-length"] == "16"
    second = post_final(client, server, b, a)
    assert second.status_code == 201, second.text
    assert (server.upload_dir / upload_id(second.headers["location"])).read_bytes() == b" worldhello"


def test_partial_head_has_upload_concat_partial(server: TusServer, client: httpx.Client) -> None:
    # T-CON-13, T-CON-15: before and after it is finished.
    url = partial(client, server, b"hello", finish=False)
    response = head(client, url)
    assert response.headers["upload-concat"] == "partial"
    assert response.headers["upload-offset"] == "0"
    assert patch(client, url, 0, b"hello").status_code == 204
    response = head(client, url)
    assert response.headers["upload-concat"] == "partial"
    assert response.headers["upload-offset"] == "5"
    assert response.headers["upload-length"] == "5"
    info = json.loads((server.upload_dir / (upload_id(url) + ".info")).read_text())
    assert info["IsPartial"] is True and info["IsFinal"] is False


def test_final_metadata_comes_from_final_request_only(server: TusServer, client: httpx.Client) -> None:
    # T-CON-9 / T-META-10: partial metadata SHALL NOT be transferred to the final upload.
    a = partial(client, server, b"hello", metadata="filename YS50eHQ=,from cGFydGlhbA==")
    with_metadata = post_final(client, server, a, **{"Upload-Metadata": "filename ZmluYWwudHh0"})
    assert with_metadata.status_code == 201, with_metadata.text
    response = head(client, with_metadata.headers["location"])
    assert decoded_metadata(response.headers.get("upload-metadata")) == {"filename": b"final.txt"}

    without_metadata = post_final(client, server, a)
    assert without_metadata.status_code == 201, without_metadata.text
    assert "upload-metadata" not in head(client, without_metadata.headers["location"]).headers
    info = json.loads((server.upload_dir / (upload_id(without_metadata.headers["location"]) + ".info")).read_text())
    assert not info["MetaData"]


@pytest.mark.parametrize(("offset", "data"), [(11, b"!"), (11, b""), (0, b"HELLO")])
def test_patch_to_final_is_403_and_changes_nothing(
    server: TusServer, client: httpx.Client, hello_world: tuple[str, str], offset: int, data: bytes
) -> None:
    # T-CON-11: 403, and neither the final upload nor its partials change.
    a, b = hello_world
    final = post_final(client, server, a, b).headers["location"]
    response = patch(client, final, offset, data)
    assert response.status_code == 403
    assert error_code(response) == "ERR_MODIFY_FINAL"
    assert head(client, final).headers["upload-offset"] == "11"
    assert (server.upload_dir / upload_id(final)).read_bytes() == b"hello world"
    assert (server.upload_dir / upload_id(a)).read_bytes() == b"hello"
    assert (server.upload_dir / upload_id(b)).read_bytes() == b" world"


def test_unfinished_partial_is_rejected(server: TusServer, client: httpx.Client) -> None:
    # T-CON-8: no concatenation-unfinished, so every partial must be complete.
    done = partial(client, server, b"hello")
    unfinished = partial(client, server, b" world", finish=False)
    assert patch(client, unfinished, 0, b" wor").status_code == 204
    before = set(os.listdir(server.upload_dir))
    response = post_final(client, server, done, unfinished)
    assert response.status_code == 400
    assert error_code(response) == "ERR_UPLOAD_NOT_FINISHED"
    assert set(os.listdir(server.upload_dir)) - before == set()


def test_unknown_partial_is_404(server: TusServer, client: httpx.Client) -> None:
    done = partial(client, server, b"hello")
    before = set(os.listdir(server.upload_dir))
    response = post_final(client, server, done, server.url + "0" * 32)
    assert response.status_code == 404
    assert set(os.listdir(server.upload_dir)) - before == set()


@pytest.mark.parametrize("kind", ["plain", "final"])
def test_non_partial_upload_in_list_is_rejected(
    server: TusServer, client: httpx.Client, hello_world: tuple[str, str], kind: str
) -> None:
    # Only partial uploads may be concatenated: a plain upload, or a final one, is 400.
    if kind == "plain":
        other = create(client, server, 3)
        assert patch(client, other, 0, b"abc").status_code == 204
    else:
        other = post_final(client, server, *hello_world).headers["location"]
    before = set(os.listdir(server.upload_dir))
    response = post_final(client, server, hello_world[0], other)
    assert response.status_code == 400
    assert error_code(response) == "ERR_INVALID_CONCAT"
    assert set(os.listdir(server.upload_dir)) - before == set()


@pytest.mark.parametrize(
    "header",
    ["final;", "final", "foo", "partial;", "final;/files/", "final;http://elsewhere/x/y", "final;/other/0123abcd"],
)
def test_malformed_upload_concat_is_400(server: TusServer, client: httpx.Client, header: str) -> None:
    # T-CON-16: `partial` or `final;<url> ...`; anything else is a bad request, nothing is created.
    before = set(os.listdir(server.upload_dir))
    response = client.post(server.url, headers={**TUS, "Upload-Concat": header, "Upload-Length": "5"})
    assert response.status_code == 400
    assert error_code(response) == "ERR_INVALID_CONCAT"
    assert set(os.listdir(server.upload_dir)) - before == set()


def test_body_on_final_post_is_403(server: TusServer, client: httpx.Client, hello_world: tuple[str, str]) -> None:
    # A final upload's bytes come only from its partials.
    before = set(os.listdir(server.upload_dir))
    response = client.post(
        server.url,
        content=b"x",
        headers={
            **TUS,
            "Upload-Concat": "final;" + " ".join(hello_world),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert response.status_code == 403
    assert set(os.listdir(server.upload_dir)) - before == set()


def test_final_larger_than_max_size_is_413(make_server, client: httpx.Client) -> None:
    # T-CORE-7: the sum of the partials is the final size, and -max-size caps it.
    server = make_server("-max-size", "10")
    a, b = partial(client, server, b"hello"), partial(client, server, b" world")
    before = set(os.listdir(server.upload_dir))
    response = post_final(client, server, a, b)
    assert response.status_code == 413
    assert error_code(response) == "ERR_MAX_SIZE_EXCEEDED"
    assert set(os.listdir(server.upload_dir)) - before == set()
    assert post_final(client, server, a, a).status_code == 201  # 10 bytes fit


def test_disable_concatenation_ignores_upload_concat(make_server, client: httpx.Client) -> None:
    # T-CON-1: not advertised, and the header means nothing.
    server = make_server("-disable-concatenation")
    extensions = client.options(server.url).headers["tus-extension"].split(",")
    assert "concatenation" not in extensions
    assert "creation" in extensions

    url = partial(client, server, b"hello")  # Upload-Concat: partial is ignored
    response = head(client, url)
    assert "upload-concat" not in response.headers
    info = json.loads((server.upload_dir / (upload_id(url) + ".info")).read_text())
    assert info["IsPartial"] is False

    # Without concatenation a "final" POST is a plain creation lacking Upload-Length.
    response = post_final(client, server, url)
    assert response.status_code == 400
    assert error_code(response) == "ERR_INVALID_UPLOAD_LENGTH"
