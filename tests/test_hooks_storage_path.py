"""pre-create's ChangeFileInfo.Storage.Path chooses where the bytes go (tusd's filestore)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
from conftest import TUS, create, head, patch


def install_pre_create(hooks_dir: Path, storage_path: str) -> None:
    hooks_dir.mkdir(parents=True, exist_ok=True)
    hook = hooks_dir / "pre-create"
    answer = json.dumps({"ChangeFileInfo": {"Storage": {"Path": storage_path}}})
    hook.write_text(f"#!/bin/sh\ncat > /dev/null\necho '{answer}'\n")
    hook.chmod(0o755)


def test_pre_create_storage_path_relative_to_the_upload_dir(make_server, client: httpx.Client, tmp_path: Path) -> None:
    install_pre_create(tmp_path / "hooks", "by-user/alice/report.bin")
    server = make_server("-hooks-dir", str(tmp_path / "hooks"))
    url = create(client, server, 11)
    upload_id = url.rsplit("/", 1)[1]
    assert patch(client, url, 0, b"hello world").status_code == 204

    stored = server.upload_dir / "by-user" / "alice" / "report.bin"
    assert stored.read_bytes() == b"hello world"
    assert (server.upload_dir / upload_id).is_symlink()
    info = json.loads((server.upload_dir / f"{upload_id}.info").read_text())
    assert info["Storage"]["Path"] == str(stored)
    assert head(client, url).headers["upload-offset"] == "11"
    assert client.get(url).content == b"hello world"

    assert client.delete(url, headers=TUS).status_code == 204
    assert not stored.exists() and not os.path.lexists(server.upload_dir / upload_id)


def test_pre_create_storage_path_absolute(make_server, client: httpx.Client, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "file.bin"
    install_pre_create(tmp_path / "hooks", str(elsewhere))
    server = make_server("-hooks-dir", str(tmp_path / "hooks"))
    url = create(client, server, 3)
    assert patch(client, url, 0, b"abc").status_code == 204
    assert elsewhere.read_bytes() == b"abc"
