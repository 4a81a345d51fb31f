"""File hooks (`-hooks-dir`), as tusd runs them.

An executable named after the event gets the tusd payload on stdin
(`{"Type", "Event": {"Upload": FileInfo, "HTTPRequest": {...}}}`), TUS_ID /
TUS_SIZE / TUS_OFFSET in its environment and the hooks directory as working
directory; its stdout (JSON, possibly empty) is its answer and a non-zero exit
is a failure. pre-create, pre-finish, pre-terminate and pre-access block the
request; post-* hooks run in the background and never delay or fail it.

The scripts are in `tests/hooks/` (POSIX sh + jq, like tusd's
examples/hooks/file). `record` appends each event to `hook-events.jsonl` next
to the hooks directory and answers `<event>.json` if that file exists. Most
tests share one server with every event enabled (`-hooks-enabled-events ""`)
and install the scripts they need into its (emptied) hooks directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, start_server
from hookdir import WAIT, HookDir, hooks_of

pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="the example hook scripts use jq")

ALL_EVENTS = (
    "pre-create",
    "post-create",
    "post-receive",
    "pre-finish",
    "post-finish",
    "pre-terminate",
    "post-terminate",
    "pre-access",
)
DEFAULT_EVENTS = {"pre-create", "post-create", "post-receive", "post-finish", "post-terminate"}
UPLOAD_FIELDS = {"ID", "Size", "Offset", "MetaData", "IsPartial", "IsFinal", "PartialUploads", "Storage"}


def count(entries: list[dict], hook: str) -> int:
    return hooks_of(entries).count(hook)


@dataclass
class Hooked:
    server: TusServer
    hooks: HookDir


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooked]:
    root = tmp_path_factory.mktemp("file-hooks")
    (root / "hooks").mkdir()
    srv = start_server(
        root / "uploads",
        *("-hooks-dir", str(root / "hooks"), "-hooks-enabled-events", "", "-progress-hooks-interval", "200ms"),
        # Room for the >64 KiB metadata of test_hooks_that_never_read_stdin_work.
        *("-max-header-size", "1000000", "-max-metadata-size", "1000000"),
    )
    yield Hooked(srv, HookDir(root / "hooks"))
    srv.stop()


@pytest.fixture
def hooked(shared: Hooked) -> Hooked:
    """The shared server (every event enabled) with an empty hooks directory and log."""
    shared.hooks.clear()
    return shared


def metadata_header(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def decode_metadata(header: str) -> dict[str, str]:
    pairs = (item.strip().split(" ") for item in header.split(",") if item.strip())
    return {p[0]: base64.b64decode(p[1]).decode() if len(p) > 1 else "" for p in pairs}


def upload_id_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def stored_names(server: TusServer) -> set[str]:
    return {p.name for p in server.upload_dir.iterdir()}


def error_code(response: httpx.Response) -> str:
    return response.text.split(":", 1)[0]


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (h.split(":", 1) for h in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def paced_patch(
    server: TusServer, url: str, chunks: list[bytes], pause: float
) -> tuple[int, dict[str, str], bytes, int]:
    """A PATCH from offset 0 whose body trickles in, one chunk per `pause`; stops sending once
    the server has answered. Returns status, headers, body and how many bytes were sent."""
    total = sum(len(c) for c in chunks)
    request = (
        f"PATCH {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {total}\r\n\r\n"
    )
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request.encode())
        for chunk in chunks:
            answered, _, _ = select.select([sock], [], [], pause)  # the pacing, cut short by an answer
            if answered:
                break
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        status, headers, body = read_response(sock)
    return status, headers, body, sent


# --- payloads -------------------------------------------------------------------------


def test_every_event_fires_with_tusds_payload(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("record", *ALL_EVENTS)
    metadata = {"filename": "report.pdf", "filetype": "application/pdf"}
    created = client.post(
        srv.url,
        headers=[
            *TUS.items(),
            ("Upload-Length", "10"),
            ("Upload-Metadata", metadata_header(metadata)),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
        ],
    )
    assert created.status_code == 201
    url = created.headers["location"]
    upload_id = upload_id_of(url)
    assert head(client, url).status_code == 200
    assert patch(client, url, 0, b"0123").status_code == 204
    assert patch(client, url, 4, b"456789").status_code == 204
    assert client.get(url).content == b"0123456789"
    assert client.delete(url, headers=TUS).status_code == 204

    entries = hooks.wait_for(
        lambda e: (
            count(e, "post-create") == count(e, "post-finish") == count(e, "post-terminate") == 1
            and count(e, "post-receive") == 2
        ),
        upload_id,
    )
    assert sorted(hooks_of(entries)) == sorted(
        ["pre-create", "post-create", *["pre-access"] * 5, *["post-receive"] * 2, "pre-finish", "post-finish"]
        + ["pre-terminate", "post-terminate"]
    )
    expected = {  # hook -> (method, offsets), in any order
        "pre-create": ("POST", [0]),
        "post-create": ("POST", [0]),
        "post-receive": ("PATCH", [4, 10]),
        "pre-finish": ("PATCH", [10]),
        "post-finish": ("PATCH", [10]),
        "pre-terminate": ("DELETE", [10]),
        "post-terminate": ("DELETE", [10]),
    }
    for hook, (method, offsets) in expected.items():
        mine = [e for e in entries if e["hook"] == hook]
        assert all(e["payload"]["Event"]["HTTPRequest"]["Method"] == method for e in mine), hook
        assert sorted(e["payload"]["Event"]["Upload"]["Offset"] for e in mine) == offsets, hook
    access = sorted(
        (e["payload"]["Event"]["HTTPRequest"]["Method"], e["payload"]["Event"]["Upload"]["Offset"])
        for e in entries
        if e["hook"] == "pre-access"
    )
    assert access == [("DELETE", 10), ("GET", 10), ("HEAD", 0), ("PATCH", 0), ("PATCH", 4)]

    for entry in entries:
        payload, hook = entry["payload"], entry["hook"]
        assert set(payload) == {"Type", "Event"} and payload["Type"] == hook
        upload, request = payload["Event"]["Upload"], payload["Event"]["HTTPRequest"]
        assert UPLOAD_FIELDS <= set(upload), hook
        # tusd gives pre-create no id yet (""); afterwards it is the upload's.
        assert upload["ID"] == upload_id or (hook == "pre-create" and upload["ID"] == ""), hook
        assert (upload["Size"], upload["MetaData"]) == (10, metadata), hook
        assert (upload["IsPartial"], upload["IsFinal"], upload["PartialUploads"]) == (False, False, None), hook
        if hook != "pre-create":
            assert upload["Storage"]["Type"] == "filestore"
            assert upload["Storage"]["Path"] == str(srv.upload_dir / upload_id)
        assert set(request) >= {"Method", "URI", "RemoteAddr", "Header"}
        assert request["URI"] == ("/files/" if request["Method"] == "POST" else f"/files/{upload_id}"), hook
        assert re.fullmatch(r"127\.0\.0\.1:\d+", request["RemoteAddr"]), request["RemoteAddr"]
        header = request["Header"]
        assert all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in header.values())
        if request["Method"] != "GET":  # a download is plain HTTP
            assert header["Tus-Resumable"] == ["1.0.0"]
        if request["Method"] == "POST":
            assert header["X-Multi"] == ["a", "b"]  # name -> every value, Go's canonical name
            assert header["Upload-Length"] == ["10"]
        assert entry["env"] == {"TUS_ID": upload["ID"], "TUS_SIZE": "10", "TUS_OFFSET": str(upload["Offset"])}
        assert entry["cwd"] == os.path.realpath(hooks.path)  # hooks run in the hooks directory


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param((), DEFAULT_EVENTS, id="default"),
        pytest.param(("-hooks-enabled-events", ""), set(ALL_EVENTS), id="empty-means-all"),
        pytest.param(
            ("-hooks-enabled-events", "post-finish,pre-terminate"), {"post-finish", "pre-terminate"}, id="subset"
        ),
    ],
)
def test_hooks_enabled_events_selects_what_runs(
    make_server: Callable[..., TusServer], client: httpx.Client, tmp_path: Path, flags: tuple[str, ...], expected: set
) -> None:
    # tusd's default leaves out pre-finish and pre-terminate (and our pre-access).
    hooks = HookDir(tmp_path / "hooks")
    hooks.path.mkdir()
    hooks.install("record", *ALL_EVENTS)
    srv = make_server("-hooks-dir", str(hooks.path), *flags)
    url = create(client, srv, 10)
    assert head(client, url).status_code == 200
    assert patch(client, url, 0, b"0123456789").status_code == 204
    assert client.get(url).status_code == 200
    assert client.delete(url, headers=TUS).status_code == 204
    # Blocking hooks ran before their responses; wait for the enabled background ones.
    background = {event for event in expected if event.startswith("post-")}
    entries = hooks.wait_for(lambda e: background <= set(hooks_of(e)), upload_id_of(url))
    assert set(hooks_of(entries)) == expected


@pytest.mark.parametrize("value", ["pre-create,post-upload", "pre_create", "PRE-CREATE"])
def test_unknown_hook_event_is_a_flag_error(tmp_path: Path, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tusd_py", "-port", "0", "-upload-dir", str(tmp_path), "-hooks-enabled-events", value],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"hooks-enabled-events" in result.stderr
    assert b"serving at" not in result.stdout


# --- pre-create -----------------------------------------------------------------------


def test_pre_create_rejection_answers_the_hooks_response(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("require-filename", "pre-create")
    hooks.install("record", "post-create")
    before = stored_names(srv)
    headers = {**TUS, "Upload-Length": "5", "Content-Type": "application/offset+octet-stream"}
    rejected = client.post(srv.url, headers=headers, content=b"hello")  # creation-with-upload
    assert rejected.status_code == 422
    assert rejected.json() == {"message": "no filename provided"}
    assert rejected.headers["content-type"] == "application/json"
    assert rejected.headers["x-rejected-by"] == "pre-create"
    assert rejected.headers["tus-resumable"] == "1.0.0"
    assert "location" not in rejected.headers
    assert stored_names(srv) == before  # nothing created, no byte stored

    accepted = client.post(
        srv.url, headers={**headers, "Upload-Metadata": metadata_header({"filename": "a"})}, content=b"hello"
    )
    assert accepted.status_code == 201
    assert (srv.upload_dir / upload_id_of(accepted.headers["location"])).read_bytes() == b"hello"
    # post-create only for the accepted one.
    entries = hooks.wait_for(lambda e: count(e, "post-create") == 1)
    assert entries[0]["payload"]["Event"]["Upload"]["ID"] == upload_id_of(accepted.headers["location"])


def test_pre_create_plain_rejection_is_400_err_upload_rejected(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("record", "pre-create")
    hooks.answer("pre-create", {"RejectUpload": True})
    before = stored_names(srv)
    response = client.post(srv.url, headers={**TUS, "Upload-Length": "5"})
    assert response.status_code == 400
    assert error_code(response) == "ERR_UPLOAD_REJECTED"
    assert stored_names(srv) == before


def test_pre_create_changes_id_and_metadata(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("choose-id", "pre-create")
    hooks.install("record", "post-create")
    wanted = f"invoice-{uuid.uuid4().hex}"
    metadata = {"id": wanted, "filename": "a.txt", "dropped": "x"}
    created = client.post(srv.url, headers={**TUS, "Upload-Length": "5", "Upload-Metadata": metadata_header(metadata)})
    assert created.status_code == 201
    url = created.headers["location"]
    assert url.endswith(f"/files/{wanted}")
    new_metadata = {"filename": "a.txt", "checked": "yes"}  # replaced as a whole
    info = json.loads((srv.upload_dir / f"{wanted}.info").read_text())
    assert (info["ID"], info["MetaData"]) == (wanted, new_metadata)
    assert decode_metadata(head(client, url).headers["upload-metadata"]) == new_metadata
    assert patch(client, url, 0, b"hello").status_code == 204
    assert (srv.upload_dir / wanted).read_bytes() == b"hello"
    (entry,) = hooks.wait_for(lambda e: count(e, "post-create") == 1, wanted)
    assert entry["env"]["TUS_ID"] == entry["payload"]["Event"]["Upload"]["ID"] == wanted
    assert entry["payload"]["Event"]["Upload"]["MetaData"] == new_metadata


@pytest.mark.parametrize("bad_id", ["../escaped", "has space", "x" * 129, "dot.info", "a/b"])
def test_pre_create_invalid_id_is_500_and_creates_nothing(hooked: Hooked, client: httpx.Client, bad_id: str) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("choose-id", "pre-create")
    hooks.install("record", "post-create")
    before = stored_names(srv)
    outside = set(srv.upload_dir.parent.iterdir())
    response = client.post(
        srv.url, headers={**TUS, "Upload-Length": "5", "Upload-Metadata": metadata_header({"id": bad_id})}
    )
    assert response.status_code == 500
    assert error_code(response) == "ERR_INVALID_UPLOAD_ID"
    assert stored_names(srv) == before
    assert set(srv.upload_dir.parent.iterdir()) == outside
    assert "post-create" not in hooks_of(hooks.entries())


def test_pre_create_id_of_an_existing_upload_is_refused(hooked: Hooked, client: httpx.Client) -> None:
    # A hook handing out a taken id must not overwrite that upload.
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("choose-id", "pre-create")
    wanted = f"taken-{uuid.uuid4().hex}"
    headers = {**TUS, "Upload-Length": "5", "Upload-Metadata": metadata_header({"id": wanted})}
    url = client.post(srv.url, headers=headers).headers["location"]
    assert patch(client, url, 0, b"first").status_code == 204
    info = (srv.upload_dir / f"{wanted}.info").read_bytes()
    again = client.post(
        srv.url, headers={**headers, "Content-Type": "application/offset+octet-stream"}, content=b"other"
    )
    assert again.status_code == 409
    assert error_code(again) == "ERR_UPLOAD_EXISTS"
    assert (srv.upload_dir / wanted).read_bytes() == b"first"
    assert (srv.upload_dir / f"{wanted}.info").read_bytes() == info


def test_pre_create_response_headers_appear_on_the_201(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("record", "pre-create")
    hooks.answer("pre-create", {"HTTPResponse": {"Header": {"X-Upload-Owner": "alice"}}})
    response = client.post(srv.url, headers={**TUS, "Upload-Length": "5"})
    assert response.status_code == 201
    assert response.headers["x-upload-owner"] == "alice"
    assert response.headers["location"].startswith(srv.url)


# --- pre-finish, post-receive, pre-terminate -----------------------------------------------


def test_pre_finish_response_shapes_the_completing_patch(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("record", "pre-finish")
    hooks.answer(
        "pre-finish",
        {"HTTPResponse": {"StatusCode": 200, "Body": "upload complete\n", "Header": {"X-Upload-Complete": "yes"}}},
    )
    url = create(client, srv, 10)
    first = patch(client, url, 0, b"0123")
    assert first.status_code == 204 and "x-upload-complete" not in first.headers
    assert hooks.entries() == []  # pre-finish only when the upload completes
    last = patch(client, url, 4, b"456789")
    assert last.status_code == 200
    assert last.text == "upload complete\n"
    assert last.headers["x-upload-complete"] == "yes"
    assert last.headers["upload-offset"] == "10"
    assert count(hooks.entries(), "pre-finish") == 1
    assert head(client, url).headers["upload-offset"] == "10"


def test_post_receive_reports_progress_while_bytes_arrive(hooked: Hooked, client: httpx.Client) -> None:
    # -progress-hooks-interval 200ms: one hook per interval while the body streams, one at its end.
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("record", "post-receive")
    url = create(client, srv, 3000)
    upload_id = upload_id_of(url)
    started = time.monotonic()
    status, _, _, _ = paced_patch(srv, url, [b"x" * 300] * 10, pause=0.1)
    elapsed, answered_at = time.monotonic() - started, time.time()
    assert status == 204
    entries = hooks.wait_for(lambda e: any(x["payload"]["Event"]["Upload"]["Offset"] == 3000 for x in e), upload_id)
    offsets = [e["payload"]["Event"]["Upload"]["Offset"] for e in entries]
    assert sorted(offsets) == sorted(set(offsets)), offsets  # each report is news
    assert max(offsets) == 3000
    assert 3 <= len(offsets) <= elapsed / 0.2 + 2, (offsets, elapsed)
    assert sum(e["time"] < answered_at for e in entries) >= 2  # during the upload, not only after it
    assert all(e["env"]["TUS_OFFSET"] == str(e["payload"]["Event"]["Upload"]["Offset"]) for e in entries)


def test_post_receive_stop_upload_stops_and_removes_the_upload(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("stop-over-quota", "post-receive")
    url = create(client, srv, 20000)
    upload_id = upload_id_of(url)
    status, headers, body, sent = paced_patch(srv, url, [b"y" * 500] * 40, pause=0.05)
    assert status == 400
    assert body.startswith(b"ERR_UPLOAD_STOPPED")
    assert headers["x-stopped-by"] == "quota"
    assert sent < 20000  # answered while the body was still coming
    assert head(client, url).status_code == 404
    assert not (srv.upload_dir / upload_id).exists()
    assert not (srv.upload_dir / f"{upload_id}.info").exists()


def test_pre_terminate_rejection_keeps_the_upload(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("record", "pre-terminate", "post-terminate")
    hooks.answer("pre-terminate", {"RejectTermination": True})
    url = create(client, srv, 10)
    assert patch(client, url, 0, b"0123").status_code == 204
    response = client.delete(url, headers=TUS)
    assert response.status_code == 400
    assert error_code(response) == "ERR_UPLOAD_TERMINATION_REJECTED"
    assert head(client, url).headers["upload-offset"] == "4"
    assert (srv.upload_dir / upload_id_of(url)).read_bytes() == b"0123"
    assert hooks_of(hooks.entries()) == ["pre-terminate"]  # and no post-terminate


# --- failing and slow hooks -------------------------------------------------------------


@pytest.mark.parametrize("script", ["fail", "not-json"])
def test_failing_pre_create_is_500_and_creates_nothing(hooked: Hooked, client: httpx.Client, script: str) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install(script, "pre-create")
    before = stored_names(srv)
    response = client.post(
        srv.url,
        headers={**TUS, "Upload-Length": "5", "Content-Type": "application/offset+octet-stream"},
        content=b"hello",
    )
    assert response.status_code == 500
    assert error_code(response) == "ERR_HOOK_FAILED"
    assert stored_names(srv) == before


def test_failing_pre_terminate_is_500_and_keeps_the_upload(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    url = create(client, srv, 10)
    hooks.install("fail", "pre-terminate")
    response = client.delete(url, headers=TUS)
    assert (response.status_code, error_code(response)) == (500, "ERR_HOOK_FAILED")
    assert head(client, url).status_code == 200


def test_failing_pre_access_is_500_and_stores_nothing(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    url = create(client, srv, 10)
    hooks.install("fail", "pre-access")
    response = patch(client, url, 0, b"0123")
    assert (response.status_code, error_code(response)) == (500, "ERR_HOOK_FAILED")
    assert head(client, url).status_code == 500
    assert (srv.upload_dir / upload_id_of(url)).read_bytes() == b""


def test_failing_pre_finish_is_500(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    url = create(client, srv, 4)
    hooks.install("fail", "pre-finish")
    response = patch(client, url, 0, b"0123")
    assert (response.status_code, error_code(response)) == (500, "ERR_HOOK_FAILED")


def metric(srv: TusServer, client: httpx.Client, name: str, hooktype: str) -> float:
    text = client.get(srv.origin + "/metrics").text
    match = re.search(rf'^{name}\{{hooktype="{hooktype}"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_failing_post_hooks_never_fail_the_request(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    post_hooks = ("post-create", "post-receive", "post-finish", "post-terminate")
    hooks.install("fail", *post_hooks)
    before = {hook: metric(srv, client, "tusd_hook_errors_total", hook) for hook in post_hooks}
    url = create(client, srv, 5)
    assert patch(client, url, 0, b"hello").status_code == 204
    assert client.get(url).content == b"hello"
    assert client.delete(url, headers=TUS).status_code == 204
    # They did run (and fail): their errors are counted.
    deadline = time.monotonic() + WAIT
    while any(metric(srv, client, "tusd_hook_errors_total", hook) <= before[hook] for hook in post_hooks):
        assert time.monotonic() < deadline, "post-* hook failures were not counted"
        time.sleep(0.05)  # polling, bounded by the deadline


def test_slow_post_finish_never_delays_the_response(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("slow-start", "post-finish")  # sleeps 2 s
    url = create(client, srv, 5)
    started = time.monotonic()
    response = patch(client, url, 0, b"hello")
    elapsed = time.monotonic() - started
    assert response.status_code == 204
    assert elapsed < 1.0
    marker = hooks.path.parent / f"started-{upload_id_of(url)}"
    deadline = time.monotonic() + WAIT
    while not marker.exists():  # the hook did start
        assert time.monotonic() < deadline, "post-finish hook never ran"
        time.sleep(0.02)  # polling, bounded by the deadline


def test_missing_hook_files_are_no_ops(hooked: Hooked, client: httpx.Client) -> None:
    srv = hooked.server  # every event enabled, no executable in the directory
    created = client.post(
        srv.url,
        headers={**TUS, "Upload-Length": "10", "Content-Type": "application/offset+octet-stream"},
        content=b"01234",
    )
    assert created.status_code == 201
    url = created.headers["location"]
    assert head(client, url).headers["upload-offset"] == "5"
    assert patch(client, url, 5, b"56789").status_code == 204
    assert client.get(url).content == b"0123456789"
    assert client.delete(url, headers=TUS).status_code == 204


def test_metadata_never_reaches_a_shell(hooked: Hooked, client: httpx.Client) -> None:
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("record", *ALL_EVENTS)
    canary = hooks.path / "canary"
    canary.write_text("still here")
    metadata = {
        "dollar": "$(touch pwned-dollar)",
        "backtick": "`touch pwned-backtick`",
        "semicolon": "x; touch pwned-semicolon; rm -f canary",
        "pipe": "| touch pwned-pipe",
        "quotes": "'\"; touch pwned-quotes; echo \"'",
        "newline": "a\ntouch pwned-newline\n",
        "filename": "$(rm -f canary).txt",
    }
    created = client.post(
        srv.url,
        headers={
            **TUS,
            "Upload-Length": "5",
            "Upload-Metadata": metadata_header(metadata),
            "Content-Type": "application/offset+octet-stream",
        },
        content=b"hello",
    )
    assert created.status_code == 201
    url = created.headers["location"]
    assert head(client, url).status_code == 200
    assert client.get(url).status_code == 200
    assert client.delete(url, headers=TUS).status_code == 204
    entries = hooks.wait_for(
        lambda e: {"post-create", "post-finish", "post-terminate"} <= set(hooks_of(e)), upload_id_of(url)
    )
    assert all(e["payload"]["Event"]["Upload"]["MetaData"] == metadata for e in entries)
    assert canary.read_text() == "still here"
    assert list(hooks.path.parent.rglob("pwned*")) == []  # the hooks dir, uploads, logs
    assert list(Path.cwd().glob("pwned*")) == []  # the server's own working directory


# Last in the module: with the bug it guards against, a crashed hook runner would fail later tests.
def test_hooks_that_never_read_stdin_work(hooked: Hooked, client: httpx.Client) -> None:
    # tusd's own example post-receive uses only TUS_* and ignores stdin. With a payload larger
    # than a pipe buffer (big metadata), writing it to such a hook hits a closed pipe: that is
    # no failure (Go's exec ignores EPIPE on stdin), and later hooks still run. (Several
    # uploads, because when exactly the pipe breaks is up to the scheduler.)
    srv, hooks = hooked.server, hooked.hooks
    hooks.install("size-env", "pre-create")
    hooks.install("progress-env", "post-receive")
    hooks.install("record", "post-finish")
    big = metadata_header({"filename": "big-metadata.txt", "notes": "n" * 100_000})
    headers = {**TUS, "Upload-Metadata": big, "Content-Type": "application/offset+octet-stream"}
    upload_ids = []
    for _ in range(5):
        created = client.post(srv.url, headers={**headers, "Upload-Length": "5"}, content=b"hello")
        assert created.status_code == 201
        upload_ids.append(upload_id_of(created.headers["location"]))
        too_big = client.post(srv.url, headers={**headers, "Upload-Length": "2000000"})
        assert (too_big.status_code, too_big.text) == (413, "too big for this service\n")
    # The background hooks ran for each upload.
    hooks.wait_for(lambda found: {x["env"]["TUS_ID"] for x in found if x["hook"] == "post-finish"} >= set(upload_ids))
    progress = (hooks.path.parent / "progress.log").read_text()
    assert all(f"Upload {upload_id} is at 100% (5/5)" in progress for upload_id in upload_ids)
