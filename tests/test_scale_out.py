"""Two tusd-py instances sharing one S3 bucket (moto's server) and one Redis (redis-server):
an upload started on A resumes on B after A is killed and ends byte-identical; a request on B
stops a stuck PATCH on A within 3 s; racing PATCHes through A and B never interleave bytes."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch
from rawhttp import RawRequest, RawResponse
from redis_server import RedisServer
from s3_server import AWS_ENVIRONMENT, S3Server, start_s3_server

MiB = 1 << 20
PART = 5 * MiB  # S3's real minimum part size
PROMPT = 3.0  # a request on B is answered, and A's stuck PATCH stopped, within this
TIMEOUT = 15.0
LOCK_TTL = "3s"  # how long a killed instance's locks outlive it


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair(
    s3: S3Server, redis: RedisServer, make_server: Callable[..., TusServer], monkeypatch: pytest.MonkeyPatch
) -> tuple[TusServer, TusServer]:
    """Instances A and B: one bucket, one Redis, nothing else shared (separate directories)."""
    for name, value in AWS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    bucket = f"scale-{random.getrandbits(48):012x}"
    s3.create_bucket(bucket)
    flags = ("-s3-bucket", bucket, "-s3-endpoint", s3.endpoint, "-redis-url", redis.url, "-redis-lock-ttl", LOCK_TTL)
    return make_server(*flags), make_server(*flags)


def on(server: TusServer, url: str) -> str:
    return server.url + url.rsplit("/", 1)[1]


def patch_headers(offset: int, length: int) -> dict[str, str]:
    return {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length),
    }


def stuck_patch(server: TusServer, url: str, offset: int, total: int, sent: bytes) -> RawRequest:
    """A PATCH that announces `total` bytes, sends `sent` and then goes silent."""
    request = RawRequest(server, "PATCH", url, patch_headers(offset, total))
    request.send(sent)
    return request


def test_an_upload_started_on_a_resumes_on_b_after_a_is_killed(
    pair: tuple[TusServer, TusServer], client: httpx.Client
) -> None:
    a, b = pair
    data = random.Random(7).randbytes(3 * PART + 12345)
    url = create(client, a, len(data))
    assert patch(client, url, 0, data[: PART + 100]).status_code == 204  # one part and a .part tail
    # A second PATCH on A gets another part's worth of bytes in, then A dies mid-body.
    request = stuck_patch(a, url, PART + 100, len(data) - PART - 100, data[PART + 100 : 2 * PART + 300])
    with request:
        a.stop(signal.SIGKILL)  # what A stored of the bytes on the wire is for S3 to say
    # B answers once A's lock has expired (its TTL): the lock dies with A.
    offset = int(head(client, on(b, url)).headers["upload-offset"])
    assert PART + 100 <= offset <= 2 * PART + 300
    response = patch(client, on(b, url), offset, data[offset:])
    assert response.status_code == 204, response.text
    assert int(response.headers["upload-offset"]) == len(data)
    assert client.get(on(b, url)).content == data


def test_a_request_on_b_stops_a_stuck_patch_on_a_within_3_s(
    pair: tuple[TusServer, TusServer], client: httpx.Client
) -> None:
    a, b = pair
    data = random.Random(8).randbytes(2 * PART)
    url = create(client, a, len(data))
    with stuck_patch(a, url, 0, len(data), data[: MiB + 10]) as stuck:
        started = time.monotonic()
        response = head(client, on(b, url))
        assert time.monotonic() - started < PROMPT, "B waited for A's stuck PATCH"
        assert response.status_code == 200
        answer: RawResponse = stuck.read_response(deadline=started + PROMPT)
        assert answer.status == 400 and b"ERR_UPLOAD_INTERRUPTED" in answer.body
    offset = int(head(client, on(b, url)).headers["upload-offset"])
    assert offset <= MiB + 10  # what A received before it let go, kept
    assert patch(client, on(b, url), offset, data[offset:]).status_code == 204
    assert client.get(on(a, url)).content == data


def send(statuses: dict[str, int], name: str, url: str, data: bytes) -> None:
    with httpx.Client(timeout=30.0) as own:
        statuses[name] = patch(own, url, 0, data).status_code


def test_racing_patches_through_a_and_b_never_interleave(
    pair: tuple[TusServer, TusServer], client: httpx.Client
) -> None:
    a, b = pair
    size = PART + MiB
    from_a = random.Random(9).randbytes(size)
    from_b = random.Random(10).randbytes(size)
    for _ in range(3):
        url = create(client, a, size)
        statuses: dict[str, int] = {}
        racers = [
            threading.Thread(target=send, args=(statuses, "a", on(a, url), from_a)),
            threading.Thread(target=send, args=(statuses, "b", on(b, url), from_b)),
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
        assert not any(racer.is_alive() for racer in racers)
        assert set(statuses.values()) <= {204, 400, 409}, statuses
        # Whatever got stored came from one client only; completing it with A's bytes
        # must give A's bytes after a prefix of exactly one of them.
        offset = int(head(client, on(b, url)).headers["upload-offset"])
        if offset < size:
            assert patch(client, on(b, url), offset, from_a[offset:]).status_code == 204
        stored = client.get(on(a, url)).content
        assert len(stored) == size
        assert stored[offset:] == from_a[offset:]
        assert stored[:offset] in (from_a[:offset], from_b[:offset])


def test_workers_share_locks_through_redis(
    s3: S3Server,
    redis: RedisServer,
    make_server: Callable[..., TusServer],
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.Client,
) -> None:
    for name, value in AWS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    s3.create_bucket("workers")
    server = make_server("-s3-bucket", "workers", "-s3-endpoint", s3.endpoint, "-redis-url", redis.url, "-workers", "2")
    data = random.Random(11).randbytes(3 * MiB)
    url = create(client, server, len(data))
    for offset in range(0, len(data), MiB):  # new connections: both workers take part
        with httpx.Client(timeout=30.0) as own:
            assert patch(own, url, offset, data[offset : offset + MiB]).status_code == 204
    assert client.get(url).content == data


def test_lock_left_by_a_killed_instance_frees_within_its_ttl(
    pair: tuple[TusServer, TusServer], client: httpx.Client
) -> None:
    a, b = pair
    data = random.Random(12).randbytes(MiB)
    url = create(client, a, len(data))
    with stuck_patch(a, url, 0, len(data), data[:1000]):
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
    response = head(client, on(b, url))
    assert response.status_code == 200
    assert time.monotonic() - killed < 3 + PROMPT  # the TTL, and a retry
    offset = int(response.headers["upload-offset"])
    assert patch(client, on(b, url), offset, data[offset:]).status_code == 204
    assert client.get(on(b, url)).content == data


def test_an_upload_terminated_on_b_is_gone_on_a(pair: tuple[TusServer, TusServer], client: httpx.Client) -> None:
    # A has seen the upload (it remembers ids that exist); B's DELETE must still be final on A.
    a, b = pair
    url = create(client, a, 10)
    assert patch(client, url, 0, b"01234").status_code == 204
    assert client.delete(on(b, url), headers=TUS).status_code == 204
    assert head(client, url).status_code == 404
    assert patch(client, url, 5, b"56789").status_code == 404
