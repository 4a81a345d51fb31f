from __future__ import annotations

import httpx
from conftest import TUS, TusServer, create, head, patch


def test_create_patch_head(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 11)
    assert patch(client, url, 0, b"hello").headers["upload-offset"] == "5"
    assert patch(client, url, 5, b" world").status_code == 204
    response = head(client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "11"
    upload_id = url.rsplit("/", 1)[1]
    assert (server.upload_dir / upload_id).read_bytes() == b"hello world"


def test_options(server: TusServer, client: httpx.Client) -> None:
    response = client.options(server.url, headers={"Tus-Resumable": "9.9.9"})
    assert response.status_code == 200
    assert response.headers["tus-version"] == "1.0.0"
    assert TUS["Tus-Resumable"] == response.headers["tus-resumable"]
