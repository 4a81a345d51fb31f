"""HEADs answered inside the HTTP protocol (`TusApp.answer_now`, http_protocol.py): the answer
must be the usual path's, byte for byte but the date, and every request it cannot answer
exactly alike (a busy lock, a hook, an error, a header that asks for more) must go the usual
way. In-process for the decisions, over real HTTP for what the connection sees."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, run_bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawhttp import exchange, parsed, send_until_closed

from tusd_py.app import create_app
from tusd_py.asgi import TusApp, header_lines
from tusd_py.config import Config
from tusd_py.info import UploadInfo
from tusd_py.lockers import FileLocker, MemoryLocker
from tusd_py.stores import FileStore

BOUND = 10.0
UPLOAD_ID = "a" * 32
ABC_SHA256 = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_bounded(scenario, BOUND)


def scope(path: str, **headers: str) -> dict[str, object]:
    names = {"Tus-Resumable": "1.0.0", **headers}
    return {
        "type": "http",
        "method": "HEAD",
        "path": path,
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in names.items()],
    }


def stored(tmp_path: Path, info: UploadInfo, data: bytes = b"") -> FileStore:
    store = FileStore(tmp_path)

    async def scenario() -> None:
        await store.create(info)

    run(scenario)
    if data:
        with open(store.data_path(info.id), "ab") as f:
            f.write(data)
    return store


def test_a_plain_head_is_answered_at_once(tmp_path: Path) -> None:
    store = stored(tmp_path, UploadInfo(id=UPLOAD_ID, size=10, metadata={"name": "a.txt"}), b"12345")
    app = create_app(Config(upload_dir=str(tmp_path)), store=store, locker=MemoryLocker())
    answer = app.answer_now(scope(f"/files/{UPLOAD_ID}"))
    assert answer is not None
    status, lines = answer
    fields = parsed(lines)
    assert status == 200
    assert fields[b"upload-offset"] == b"5" and fields[b"upload-length"] == b"10"
    assert fields[b"upload-metadata"] == b"name YS50eHQ="
    assert fields[b"tus-resumable"] == b"1.0.0" and fields[b"cache-control"] == b"no-store"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"/files/{UPLOAD_ID}", {"Tus-Resumable": "0.2.2"}),  # 412
        (f"/files/{UPLOAD_ID}", {"Origin": "https://example.com"}),  # CORS headers
        (f"/files/{UPLOAD_ID}", {"X-HTTP-Method-Override": "DELETE"}),
        (f"/files/{UPLOAD_ID}", {"Upload-Draft-Interop-Version": "6"}),  # the IETF draft
        (f"/files/{UPLOAD_ID}", {"Want-Repr-Digest": "sha-256=1"}),
        (f"/files/{UPLOAD_ID}", {"Upload-Metadata": "x"}),
        (f"/files/{UPLOAD_ID}", {"X-Big": "x" * 70_000}),  # 431
        (f"/files/{'b' * 32}", {}),  # 404
        ("/files/..%2Fetc", {}),
        ("/files/", {}),  # 405
        ("/files", {}),
        ("/metrics", {}),
        ("/elsewhere", {}),
    ],
)
def test_anything_else_goes_the_usual_way(tmp_path: Path, path: str, headers: dict[str, str]) -> None:
    store = stored(tmp_path, UploadInfo(id=UPLOAD_ID, size=10))
    app = create_app(Config(upload_dir=str(tmp_path), expose_metrics=True), store=store, locker=MemoryLocker())
    assert app.answer_now(scope(path, **headers)) is None
    assert not (tmp_path / f"{'b' * 32}.lock").exists()  # no lock file for an upload that is not there


@pytest.mark.parametrize(
    ("info", "data"),
    [
        (UploadInfo(id=UPLOAD_ID, size=3, is_final=True, partial_uploads=("c" * 32,)), b"abc"),  # URLs need Host
        (UploadInfo(id=UPLOAD_ID, size=3), b"abc"),  # complete, completion never ran
    ],
)
def test_uploads_that_need_more_go_the_usual_way(tmp_path: Path, info: UploadInfo, data: bytes) -> None:
    store = stored(tmp_path, info, data)
    app = create_app(Config(upload_dir=str(tmp_path)), store=store, locker=MemoryLocker())
    assert app.answer_now(scope(f"/files/{UPLOAD_ID}")) is None


def test_an_expired_upload_goes_the_usual_way(tmp_path: Path) -> None:
    store = stored(tmp_path, UploadInfo(id=UPLOAD_ID, size=10))
    old = time.time() - 60
    os.utime(store.data_path(UPLOAD_ID), (old, old))  # last byte stored a minute ago
    lasting = create_app(Config(upload_dir=str(tmp_path), expiration=3600.0), store=store, locker=MemoryLocker())
    answer = lasting.answer_now(scope(f"/files/{UPLOAD_ID}"))
    assert answer is not None and b"upload-expires" in parsed(answer[1])
    expiring = create_app(Config(upload_dir=str(tmp_path), expiration=1.0), store=store, locker=MemoryLocker())
    assert expiring.answer_now(scope(f"/files/{UPLOAD_ID}")) is None  # 410


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_held_lock_sends_the_head_the_usual_way(tmp_path: Path, kind: str) -> None:
    store = stored(tmp_path, UploadInfo(id=UPLOAD_ID, size=10))
    locker = MemoryLocker() if kind == "memory" else FileLocker(tmp_path)
    app = create_app(Config(upload_dir=str(tmp_path)), store=store, locker=locker)

    async def scenario() -> None:
        async with locker.hold(UPLOAD_ID):
            assert app.answer_now(scope(f"/files/{UPLOAD_ID}")) is None  # it interrupts the holder
        assert app.answer_now(scope(f"/files/{UPLOAD_ID}")) is not None

    run(scenario)


def test_a_lock_held_by_another_process_sends_the_head_the_usual_way(tmp_path: Path) -> None:
    # Two FileLocker instances exclude each other as two processes do (test_file_locker.py).
    store = stored(tmp_path, UploadInfo(id=UPLOAD_ID, size=10))
    elsewhere = FileLocker(tmp_path)
    app = create_app(Config(upload_dir=str(tmp_path)), store=store, locker=FileLocker(tmp_path))

    async def scenario() -> None:
        async with elsewhere.hold(UPLOAD_ID):
            assert app.answer_now(scope(f"/files/{UPLOAD_ID}")) is None
        assert app.answer_now(scope(f"/files/{UPLOAD_ID}")) is not None

    run(scenario)


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_hold_now_is_a_lock(tmp_path: Path, kind: str) -> None:
    locker = MemoryLocker(acquire_timeout=0.2) if kind == "memory" else FileLocker(tmp_path, acquire_timeout=0.2)

    async def scenario() -> None:
        async with locker.hold("u1", interrupt=False):
            pass
        held = locker.hold_now("u1")
        assert held is not None
        assert locker.hold_now("u1") is None
        with anyio.move_on_after(0.1) as waited:
            async with locker.hold("u1", interrupt=False):
                pass
        assert waited.cancelled_caught  # hold() waits for it
        held[0]()
        async with locker.hold("u1", interrupt=False):
            assert locker.hold_now("u1") is None
        again = locker.hold_now("u1")
        assert again is not None
        again[0]()

    run(scenario)


@pytest.mark.parametrize("kind", ["memory", "file", "file elsewhere"])
def test_every_hold_gives_a_new_generation(tmp_path: Path, kind: str) -> None:
    locker = MemoryLocker() if kind == "memory" else FileLocker(tmp_path)
    other = FileLocker(tmp_path) if kind == "file elsewhere" else locker  # another process

    def generation() -> bytes:
        held = locker.hold_now("u1")
        assert held is not None
        held[0]()
        return held[1]

    async def scenario() -> None:
        seen = set()
        for _ in range(3):
            async with other.hold("u1", interrupt=False):
                pass
            first = generation()
            assert first and first == generation()  # hold_now() changes nothing
            assert first not in seen
            seen.add(first)

    run(scenario)


def test_a_change_made_elsewhere_is_seen(tmp_path: Path) -> None:
    # AtOnce.head() keeps the answers it made; another process's hold() makes it load again.
    store = stored(tmp_path, UploadInfo(id=UPLOAD_ID, size=10))
    elsewhere = FileLocker(tmp_path)
    app = create_app(Config(upload_dir=str(tmp_path)), store=store, locker=FileLocker(tmp_path))

    def offset() -> bytes:
        answer = app.answer_now(scope(f"/files/{UPLOAD_ID}"))
        assert answer is not None
        return parsed(answer[1])[b"upload-offset"]

    async def scenario() -> None:
        for stored_bytes in (b"", b"123", b"4567"):
            async with elsewhere.hold(UPLOAD_ID):
                with open(store.data_path(UPLOAD_ID), "ab") as f:
                    f.write(stored_bytes)
            total = os.path.getsize(store.data_path(UPLOAD_ID))
            assert offset() == offset() == str(total).encode()

    run(scenario)


def test_hold_now_never_makes_a_lock_file(tmp_path: Path) -> None:
    # The handler does not check that the upload exists first: a lock file outlives nothing.
    locker = FileLocker(tmp_path)
    assert locker.hold_now("u2") is None
    assert not (tmp_path / "u2.lock").exists()


# --- over HTTP ----------------------------------------------------------------------


def head_request(server: TusServer, path: str, *extra: str) -> bytes:
    lines = [f"HEAD {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Tus-Resumable: 1.0.0", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def without_date(response: bytes) -> list[bytes]:
    return [line for line in response.split(b"\r\n") if not line.startswith(b"date:")]


def test_the_answer_is_the_usual_paths(server: TusServer, client: httpx.Client) -> None:
    urls = [
        create(client, server, 100),
        create(client, server, None, **{"Upload-Metadata": "filename cGhvdG8uanBn,empty"}),
        create(client, server, 5, **{"Upload-Concat": "partial"}),
        create(client, server, 3, **{"Repr-Digest": f"sha-256=:{ABC_SHA256}:"}),
    ]
    assert patch(client, urls[0], 0, b"x" * 40).status_code == 204
    assert patch(client, urls[3], 0, b"abc").status_code == 204  # complete: a Repr-Digest too
    for url in urls:
        path = httpx.URL(url).path
        # Upload-Metadata on a HEAD changes nothing but sends it the usual way.
        quick, usual = exchange(
            server, [head_request(server, path), head_request(server, path, "Upload-Metadata: x")], 2
        )
        assert without_date(quick) == without_date(usual)
        assert quick.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"repr-digest: sha-256=:{ABC_SHA256}:".encode() in quick


def test_pipelined_heads_are_answered_in_order(server: TusServer, client: httpx.Client) -> None:
    sizes = [10, 20, 30]
    paths = [httpx.URL(create(client, server, size)).path for size in sizes]
    requests, expected = [], []
    for i in range(60):
        if i % 10 == 7:
            requests.append(head_request(server, "/files/" + "f" * 32))
            expected.append((b"404", None))
        elif i % 10 == 9:
            requests.append(head_request(server, paths[0], "Origin: https://example.com"))
            expected.append((b"200", b"upload-length: 10"))
        else:
            requests.append(head_request(server, paths[i % 3]))
            expected.append((b"200", f"upload-length: {sizes[i % 3]}".encode()))
    responses = exchange(server, requests, len(requests))
    for response, (status, length) in zip(responses, expected, strict=True):
        assert response.split(b" ")[1] == status, response
        if length is not None:
            assert length in response.split(b"\r\n")
    assert head(client, f"{server.origin}{paths[1]}").headers["upload-length"] == "20"


def test_head_closes_when_asked(server: TusServer, client: httpx.Client) -> None:
    path = httpx.URL(create(client, server, 10)).path
    received = send_until_closed(server, head_request(server, path, "Connection: close"))
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"upload-length: 10" in received


def test_head_with_a_body_goes_the_usual_way(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, 10)
    response = client.request("HEAD", url, headers=TUS, content=b"12345")
    assert response.status_code == 200 and response.headers["upload-offset"] == "0"
    assert head(client, url).headers["upload-offset"] == "0"


def test_header_lines_refuse_what_cannot_be_sent() -> None:
    assert header_lines({"Upload-Offset": "5", "Upload-Metadata": "a YQ=="}) == (
        b"upload-offset: 5\r\nupload-metadata: a YQ==\r\n"
    )
    for value in ("a\r\nx-injected: 1", "a\nb", "a\x00", "\u2603"):
        assert header_lines({"Upload-Metadata": value}) is None


def test_an_unchanged_upload_is_not_read_again(tmp_path: Path) -> None:
    # Only a holder of hold() changes an upload: a change made without the lock goes unseen.
    store = stored(tmp_path, UploadInfo(id=UPLOAD_ID, size=10))
    locker = FileLocker(tmp_path)
    app = create_app(Config(upload_dir=str(tmp_path)), store=store, locker=locker)

    async def scenario() -> None:
        async with locker.hold(UPLOAD_ID):
            pass
        first = app.answer_now(scope(f"/files/{UPLOAD_ID}"))
        with open(store.data_path(UPLOAD_ID), "ab") as f:
            f.write(b"12345")  # no lock
        assert app.answer_now(scope(f"/files/{UPLOAD_ID}")) == first
        async with locker.hold(UPLOAD_ID):
            pass
        answer = app.answer_now(scope(f"/files/{UPLOAD_ID}"))
        assert answer is not None and parsed(answer[1])[b"upload-offset"] == b"5"

    run(scenario)


# --- the same answer, for any upload ------------------------------------------------------------

METADATA_KEYS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1, max_size=8
)


@st.composite
def uploads(draw: st.DrawFn) -> tuple[UploadInfo, int]:
    """An upload's info and how many bytes it has stored."""
    deferred = draw(st.booleans())
    size = None if deferred else draw(st.integers(0, 40))
    stored_bytes = draw(st.integers(0, 40 if size is None else size))
    complete = size is not None and stored_bytes == size
    finished = complete and draw(st.booleans())
    digests = {"sha256": draw(st.binary(min_size=32, max_size=32))} if finished and draw(st.booleans()) else {}
    info = UploadInfo(
        id=UPLOAD_ID,
        size=size,
        metadata=draw(st.dictionaries(METADATA_KEYS, st.text(max_size=12), max_size=3)),
        is_partial=draw(st.booleans()),
        digests=digests,
        finished=finished,
    )
    return info, stored_bytes


def usual_head(app: TusApp, path: str) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    anyio.run(app, {**scope(path), "raw_path": path.encode(), "query_string": b""}, receive, send)
    return sent[0]["status"], list(sent[0]["headers"])  # type: ignore[call-overload, return-value]


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(upload=uploads(), expiration=st.sampled_from([0.0, 3600.0]))
def test_the_answer_at_once_is_the_usual_one_for_any_upload(
    tmp_path_factory: pytest.TempPathFactory, upload: tuple[UploadInfo, int], expiration: float
) -> None:
    info, stored_bytes = upload
    directory = tmp_path_factory.mktemp("any")
    store = stored(directory, info, b"x" * stored_bytes)
    app = create_app(Config(upload_dir=str(directory), expiration=expiration), store=store, locker=MemoryLocker())
    path = f"/files/{UPLOAD_ID}"
    answer = app.answer_now(scope(path))
    if info.with_offset(stored_bytes).is_complete and not info.finished:
        assert answer is None  # completion must run first
        return
    assert answer is not None
    status, headers = usual_head(app, path)
    assert (status, answer[0]) == (200, 200)
    usual = b"".join(name + b": " + value + b"\r\n" for name, value in headers if name != b"content-length")
    assert answer[1] == usual
