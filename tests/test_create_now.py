"""Creations answered inside the HTTP protocol (`TusApp.answer_now` with a body,
`at_once.AtOnce.create`, http_protocol.py): a creation whose whole body came with its
headers is stored complete in one step, and its answer, its stored files and its events
must be the usual path's; every creation it cannot serve exactly alike (a hook, a checksum,
a concatenation, an error, a body still on its way) must go the usual way and find
nothing created. In-process for the decisions, over real HTTP for what the connection sees."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch
from hookdir import HookDir, hooks_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawhttp import exchange, parsed, read_bodiless, send_until_closed

from tusd_py.app import create_app
from tusd_py.asgi import TusApp
from tusd_py.config import Config
from tusd_py.lockers import FileLocker, MemoryLocker
from tusd_py.stores import FileStore

BODY = b"0123456789"
BOUND = 10.0  # seconds, for any wait on the server


def scope(path: str = "/files/", body: bytes = BODY, **headers: str) -> dict[str, object]:
    names = {
        "Host": "127.0.0.1:1080",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(body)),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(len(body)),
        **headers,
    }
    return {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 1080),
        "client": ("127.0.0.1", 50000),
        "headers": [(name.lower().encode(), value.encode()) for name, value in names.items() if value is not None],
    }


def app_in(directory: Path, locker: object | None = None, **config: object) -> TusApp:
    return create_app(
        Config(upload_dir=str(directory), **config),  # type: ignore[arg-type]
        store=FileStore(directory),
        locker=locker or FileLocker(directory),  # type: ignore[arg-type]
    )


def upload_ids(directory: Path) -> list[str]:
    return sorted(name[: -len(".info")] for name in os.listdir(directory) if name.endswith(".info"))


def test_a_whole_small_creation_is_answered_at_once(tmp_path: Path) -> None:
    app = app_in(tmp_path)
    answer = app.answer_now(scope(**{"Upload-Metadata": "filename YS50eHQ="}), BODY)
    assert answer is not None
    status, lines = answer
    fields = parsed(lines)
    assert status == 201
    assert fields[b"upload-offset"] == b"10" and fields[b"tus-resumable"] == b"1.0.0"
    (upload_id,) = upload_ids(tmp_path)
    assert fields[b"location"] == f"http://127.0.0.1:1080/files/{upload_id}".encode()
    assert (tmp_path / upload_id).read_bytes() == BODY
    document = json.loads((tmp_path / f"{upload_id}.info").read_text())
    assert document["Size"] == document["Offset"] == 10 and document["Finished"] is True
    assert document["MetaData"] == {"filename": "a.txt"}
    # The lock file is made, with a generation, so the next HEAD can be answered at once.
    assert len((tmp_path / f"{upload_id}.lock").read_bytes()) == 8
    head_answer = app.answer_now(
        {**scope(f"/files/{upload_id}"), "method": "HEAD", "headers": [(b"tus-resumable", b"1.0.0")]}
    )
    assert head_answer is not None and parsed(head_answer[1])[b"upload-offset"] == b"10"


@pytest.mark.parametrize(
    ("path", "headers", "config"),
    [
        ("/files/", {"Tus-Resumable": "0.2.2"}, {}),  # 412
        ("/files/", {"Content-Type": "application/octet-stream"}, {}),  # the body is not upload data
        ("/files/", {"Upload-Length": "11"}, {}),  # more to come in a PATCH
        ("/files/", {"Upload-Length": None, "Upload-Defer-Length": "1"}, {}),
        ("/files/", {"Upload-Defer-Length": "1"}, {}),  # 400, both
        ("/files/", {"Upload-Length": "x"}, {}),  # 400
        ("/files/", {"Upload-Length": "10"}, {"max_size": 5}),  # 413
        ("/files/", {"Upload-Metadata": "a b c"}, {}),  # 400
        ("/files/", {"Upload-Checksum": "sha1 +2a7cD4HvhDyu5SOQTzFfPiMeWs="}, {}),  # checked as usual
        ("/files/", {"Upload-Metadata": "checksum c2hhMjU2IGFiYw=="}, {}),  # a declared digest
        ("/files/", {"Repr-Digest": "sha-256=:AAAA:"}, {}),
        ("/files/", {"Upload-Concat": "partial"}, {}),
        ("/files/", {"Upload-Concat": "final;/files/a /files/b"}, {}),
        ("/files/", {"Trailer": "Upload-Checksum"}, {}),  # 400
        ("/files/", {"Origin": "https://example.com"}, {}),  # CORS headers
        ("/files/", {"X-HTTP-Method-Override": "PATCH"}, {}),
        ("/files/", {"Upload-Draft-Interop-Version": "6"}, {}),  # the IETF draft
        ("/files/", {"X-Big": "x" * 70_000}, {}),  # 431
        ("/files/", {"Upload-Metadata": "k " + "YWFh" * 30}, {"max_metadata_size": 100}),  # 400
        ("/files/" + "a" * 32, {}, {}),  # 405
        ("/elsewhere", {}, {}),
    ],
)
def test_anything_else_goes_the_usual_way(
    tmp_path: Path, path: str, headers: dict[str, str | None], config: dict[str, object]
) -> None:
    app = app_in(tmp_path, **config)
    assert app.answer_now(scope(path, **headers), BODY) is None  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []  # nothing created, not even a lock file


@pytest.mark.parametrize("event", ["pre-create", "post-receive", "pre-finish"])
def test_a_hook_that_shapes_a_creation_sends_it_the_usual_way(tmp_path: Path, event: str) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    app = app_in(tmp_path / "uploads", hooks_dir=str(hooks), hooks_enabled_events=event)
    assert app.answer_now(scope(), BODY) is None


def test_during_shutdown_creation_goes_the_usual_way(tmp_path: Path) -> None:
    app = app_in(tmp_path)
    handler = app.routes.create_now.__self__.tus  # type: ignore[union-attr]
    handler.shutdown()
    assert app.answer_now(scope(), BODY) is None
    assert os.listdir(tmp_path) == []


def test_a_store_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write_info", full)
    app = create_app(Config(upload_dir=str(tmp_path)), store=store, locker=FileLocker(tmp_path))
    assert app.answer_now(scope(), BODY) is None  # the usual path then reports it
    assert os.listdir(tmp_path) == []


def test_metrics_count_a_creation_at_once_as_the_usual_path_does(tmp_path: Path) -> None:
    app = app_in(tmp_path, locker=MemoryLocker())
    metrics = app.routes.create_now.__self__.tus.metrics  # type: ignore[union-attr]
    assert app.answer_now(scope(), BODY) is not None
    sample = metrics.registry.get_sample_value
    assert sample("tusd_uploads_created") == 1
    assert sample("tusd_uploads_finished") == 1
    assert sample("tusd_bytes_received") == len(BODY)
    assert sample("tusd_requests_total", {"method": "POST"}) == 1


# --- the same outcome as the usual path, for any creation ---------------------------------------

METADATA_KEYS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1, max_size=8
)


def usual_creation(app: TusApp, request: dict[str, object], body: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    anyio.run(app, request, receive, send)
    return sent[0]["status"], list(sent[0]["headers"])  # type: ignore[call-overload, return-value]


def stored_state(directory: Path, upload_id: str) -> tuple[bytes, dict[str, object]]:
    document = json.loads((directory / f"{upload_id}.info").read_text())
    del document["ID"], document["Storage"]
    return (directory / upload_id).read_bytes(), document


def without_ids(lines: list[tuple[bytes, bytes]], upload_id: str) -> list[tuple[bytes, bytes]]:
    return [(name, value.replace(upload_id.encode(), b"ID")) for name, value in lines if name != b"content-length"]


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.binary(min_size=1, max_size=200),
    metadata=st.dictionaries(METADATA_KEYS, st.text(max_size=12), max_size=3),
    expiration=st.sampled_from([0.0, 3600.0]),
)
def test_the_creation_at_once_is_the_usual_one(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, metadata: dict[str, str], expiration: float
) -> None:
    from tusd_py.protocol import format_metadata

    headers = {"Upload-Metadata": format_metadata(metadata)} if metadata else {}
    quick_dir, usual_dir = tmp_path_factory.mktemp("quick"), tmp_path_factory.mktemp("usual")
    request = scope(body=body, **headers)
    answer = app_in(quick_dir, expiration=expiration).answer_now(request, body)
    assert answer is not None
    status, lines = usual_creation(app_in(usual_dir, expiration=expiration), request, body)
    (quick_id,), (usual_id,) = upload_ids(quick_dir), upload_ids(usual_dir)
    quick_lines = [tuple(line.split(b": ", 1)) for line in answer[1][:-2].split(b"\r\n")]
    assert (answer[0], without_ids(quick_lines, quick_id)) == (status, without_ids(lines, usual_id))  # type: ignore[arg-type]
    assert stored_state(quick_dir, quick_id) == stored_state(usual_dir, usual_id)


# --- over HTTP ----------------------------------------------------------------------------------


def creation_request(server: TusServer, body: bytes, *extra: str) -> bytes:
    lines = [
        "POST /files/ HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Tus-Resumable: 1.0.0",
        f"Upload-Length: {len(body)}",
        "Content-Type: application/offset+octet-stream",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def header(response: bytes, name: bytes) -> bytes:
    for line in response.split(b"\r\n")[1:]:
        key, _, value = line.partition(b": ")
        if key.lower() == name:
            return value
    raise AssertionError(f"no {name!r} in {response!r}")


def comparable(response: bytes) -> list[bytes]:
    location = header(response, b"location")
    return [line.replace(location, b"LOCATION") for line in response.split(b"\r\n") if not line.startswith(b"date:")]


def test_the_answer_is_the_usual_paths(server: TusServer, client: httpx.Client) -> None:
    body = os.urandom(16 * 1024)
    quick_request = creation_request(server, body, "Upload-Metadata: filename cGhvdG8uanBn,empty")
    # The method override (POST as POST) changes nothing but sends it the usual way.
    usual_request = creation_request(
        server, body, "Upload-Metadata: filename cGhvdG8uanBn,empty", "X-HTTP-Method-Override: POST"
    )
    (quick,) = exchange(server, [quick_request], 1)
    (usual,) = exchange(server, [usual_request], 1)
    assert quick.startswith(b"HTTP/1.1 201 Created\r\n")
    assert comparable(quick) == comparable(usual)
    for response in (quick, usual):
        url = header(response, b"location").decode()
        assert client.get(url).content == body
        described = head(client, url)
        assert described.headers["upload-offset"] == described.headers["upload-length"] == str(len(body))
        assert described.headers["upload-metadata"] == "filename cGhvdG8uanBn,empty"
        # Complete: a PATCH has nothing to add.
        assert patch(client, url, len(body), b"x").status_code == 413


def test_a_body_that_comes_later_goes_the_usual_way(server: TusServer, client: httpx.Client) -> None:
    # With Expect: 100-continue the body is sent only after the 100: never in the read of
    # the headers. The usual path reads it, and the upload is the same.
    body = b"later" * 100
    request = creation_request(server, body, "Expect: 100-continue")
    head_part, _, _ = request.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
        sock.sendall(head_part + b"\r\n\r\n")
        (interim,) = read_bodiless(sock, 1)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        (response,) = read_bodiless(sock, 1)
    assert response.startswith(b"HTTP/1.1 201 Created\r\n")
    url = header(response, b"location").decode()
    assert client.get(url).content == body


def test_pipelined_creations_and_heads_are_answered_in_order(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 3)
    path = httpx.URL(url).path
    bodies = [os.urandom(100 + i) for i in range(12)]
    requests, kinds = [], []
    for i, body in enumerate(bodies):
        requests.append(creation_request(server, body))
        kinds.append(("create", body))
        if i % 3 == 2:
            requests.append(f"HEAD {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n".encode())
            kinds.append(("head", b""))
    responses = exchange(server, requests, len(requests))
    for response, (kind, body) in zip(responses, kinds, strict=True):
        if kind == "head":
            assert response.startswith(b"HTTP/1.1 200 OK\r\n") and header(response, b"upload-length") == b"3"
        else:
            assert response.startswith(b"HTTP/1.1 201 Created\r\n"), response
            assert client.get(header(response, b"location").decode()).content == body


def test_a_pipelined_creation_last_in_its_read_is_answered(server: TusServer, client: httpx.Client) -> None:
    # The second one starts when the first is answered, after the read that carried both:
    # its body is all here, and nothing more will come to finish it (it once waited forever).
    first, second = b"first" * 10, b"second" * 10
    responses = exchange(server, [creation_request(server, first), creation_request(server, second)], 2)
    for response, body in zip(responses, (first, second), strict=True):
        assert response.startswith(b"HTTP/1.1 201 Created\r\n")
        assert client.get(header(response, b"location").decode()).content == body


def test_a_creation_that_closes_is_answered_and_closed(server: TusServer, client: httpx.Client) -> None:
    received = send_until_closed(server, creation_request(server, BODY, "Connection: close"))
    assert received.startswith(b"HTTP/1.1 201 Created\r\n")
    assert client.get(header(received, b"location").decode()).content == BODY


def test_notifications_carry_the_usual_payloads(
    make_server: Callable[..., TusServer], client: httpx.Client, tmp_path: Path
) -> None:
    hooks = HookDir(tmp_path / "hooks")
    hooks.path.mkdir()
    hooks.install("record", "post-create", "post-finish")
    server = make_server("-hooks-dir", str(hooks.path), "-hooks-enabled-events", "post-create,post-finish")
    (quick,) = exchange(server, [creation_request(server, BODY, "Upload-Metadata: a YQ==")], 1)
    (usual,) = exchange(
        server, [creation_request(server, BODY, "Upload-Metadata: a YQ==", "X-HTTP-Method-Override: POST")], 1
    )
    ids = [header(response, b"location").decode().rsplit("/", 1)[1] for response in (quick, usual)]
    entries = hooks.wait_for(lambda found: len(found) == 4)
    payloads = {}
    for upload_id in ids:
        # Background hooks run side by side: their lines come in any order.
        mine = sorted((entry for entry in entries if entry["env"]["TUS_ID"] == upload_id), key=lambda e: e["hook"])
        assert hooks_of(mine) == ["post-create", "post-finish"]
        uploads = [entry["payload"]["Event"]["Upload"] for entry in mine]
        for upload in uploads:
            del upload["ID"], upload["Storage"]
        payloads[upload_id] = uploads
    assert payloads[ids[0]] == payloads[ids[1]]
    assert [upload["Offset"] for upload in payloads[ids[0]]] == [0, len(BODY)]


def test_tus_resumable_is_checked_over_http(server: TusServer) -> None:
    request = creation_request(server, BODY).replace(b"Tus-Resumable: 1.0.0", b"Tus-Resumable: 0.2.2")
    (response,) = exchange(server, [request], 1)
    assert response.startswith(b"HTTP/1.1 412 ")
    assert TUS["Tus-Resumable"] == "1.0.0"


@settings(derandomize=True, database=None, deadline=None, max_examples=30)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=6_000), max_size=6),
    after=st.lists(st.integers(min_value=0, max_value=8), max_size=6),
)
def test_however_the_bytes_are_split_every_creation_is_stored(
    server: TusServer, cuts: list[int], after: list[int]
) -> None:
    # Pipelined creations with bodies, and OPTIONS, sent in pieces cut anywhere (inside a
    # request line, a header, a body), and cut after some requests (`after`), where the rest
    # goes out only once their answers came: those creations arrive whole in a read of their
    # own and are answered at once, the others take the usual path. Each answer, in order,
    # and each stored upload must be the same either way.
    bodies = [bytes([i]) * (700 + 300 * i) for i in range(6)]
    requests = []
    for i, body in enumerate(bodies):
        requests.append(creation_request(server, body))
        if i % 2:
            requests.append(b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n")
    ends = {sum(len(request) for request in requests[: k + 1]): k + 1 for k in range(len(requests))}
    stream = b"".join(requests)
    waits = {end: count for end, count in ends.items() if count - 1 in after}  # cut -> answers due
    expected = [kind for i in range(len(bodies)) for kind in (("201", "200") if i % 2 else ("201",))]
    responses: list[bytes] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = 0
        for cut in sorted({min(cut, len(stream)) for cut in cuts} | set(waits) | {len(stream)}):
            if cut > start:
                sock.sendall(stream[start:cut])
            start = cut
            if cut in waits:
                responses += read_bodiless(sock, waits[cut] - len(responses))
        responses += read_bodiless(sock, len(expected) - len(responses))
    assert [response.split(b" ")[1].decode() for response in responses] == expected
    created = [response for response in responses if response.startswith(b"HTTP/1.1 201")]
    with httpx.Client(timeout=BOUND) as client:
        for response, body in zip(created, bodies, strict=True):
            assert header(response, b"upload-offset") == str(len(body)).encode()
            assert client.get(header(response, b"location").decode()).content == body
