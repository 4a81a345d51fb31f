"""The S3 store against moto's S3 server, one tusd-py instance (tests/test_scale_out.py covers several).

Each test gets its own bucket and inspects it with boto3: the `.info` object, the multipart
upload's parts, the pending `.part` tail and the final object. One moto server keeps S3's real
5 MiB minimum part size; a second one lowers it (and tusd-py's part sizes with it) so that tests
where the size does not matter stay fast.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import TUS, StreamedBody, TusServer, create, free_port, head, patch, proc_status_kib
from nodejs import run_node, write_random_file
from rawhttp import RawRequest
from s3_server import AWS_ENVIRONMENT, S3Server, start_s3_server
from tusclient import client as tus_client

from tusd_py.stores.s3 import S3Settings, S3Store

KiB = 1 << 10
MiB = 1 << 20
REAL_MIN_PART = 5 * MiB  # S3's own minimum, enforced by moto at CompleteMultipartUpload
SMALL_MIN_PART = 64 * KiB  # the lowered minimum of the fast moto server
SMALL_PART = 128 * KiB
SMALL_PART_FLAGS = ("-s3-min-part-size", str(SMALL_MIN_PART), "-s3-part-size", str(SMALL_PART))
OCTET = "application/offset+octet-stream"
WAIT_TIMEOUT = 15.0
EXIT_TIMEOUT = 30.0


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def wait_for(condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def offset_of(client: httpx.Client, url: str) -> int:
    response = head(client, url)
    assert response.status_code == 200, response.text
    return int(response.headers["upload-offset"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def upload_checksum(algorithm: str, data: bytes) -> dict[str, str]:
    return {"Upload-Checksum": f"{algorithm} {b64(hashlib.new(algorithm, data).digest())}"}


def sha256_field(data: bytes) -> str:
    return f"sha-256=:{b64(hashlib.sha256(data).digest())}:"


# --- looking into the bucket ----------------------------------------------------------------------


@dataclass(frozen=True)
class PartView:
    number: int
    size: int
    etag: str


@dataclass(frozen=True)
class PendingView:
    size: int
    next_part: int
    etag: str


@dataclass
class Bucket:
    """One test's bucket, seen through boto3 the way an operator would see it."""

    s3: S3Server
    client: Any  # a boto3 S3 client
    name: str
    prefix: str = ""

    def key(self, url: str) -> str:
        return self.prefix + upload_id(url)

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        assert not listed.get("IsTruncated")
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def keys_of(self, url: str) -> list[str]:
        return [key for key in self.keys() if key.startswith(self.key(url))]

    def multipart_uploads(self, url: str | None = None) -> list[str]:
        """Ids of the multipart uploads in progress (for one upload's key, or all)."""
        listed = self.client.list_multipart_uploads(Bucket=self.name)
        return [item["UploadId"] for item in listed.get("Uploads", []) if url is None or item["Key"] == self.key(url)]

    def info(self, url: str) -> dict[str, Any]:
        response = self.client.get_object(Bucket=self.name, Key=self.key(url) + ".info")
        with response["Body"] as body:
            return json.loads(body.read())

    def parts(self, url: str) -> list[PartView]:
        """The parts of the upload's one multipart upload."""
        (multipart_id,) = self.multipart_uploads(url)
        assert self.info(url)["Storage"]["MultipartUpload"] == multipart_id
        listed = self.client.list_parts(Bucket=self.name, Key=self.key(url), UploadId=multipart_id)
        return [PartView(p["PartNumber"], p["Size"], p["ETag"]) for p in listed.get("Parts", [])]

    def pending(self, url: str) -> PendingView | None:
        """The `.part` tail, or None."""
        try:
            found = self.client.head_object(Bucket=self.name, Key=self.key(url) + ".part")
        except self.client.exceptions.ClientError as error:
            assert error.response["Error"]["Code"] in ("404", "NoSuchKey"), error
            return None
        return PendingView(found["ContentLength"], int(found["Metadata"]["next-part"]), found["ETag"])

    def stored_size(self, url: str) -> int:
        """What S3 holds of an upload in progress: its parts plus its `.part`."""
        pending = self.pending(url)
        return sum(part.size for part in self.parts(url)) + (pending.size if pending else 0)

    def object(self, url: str) -> bytes:
        response = self.client.get_object(Bucket=self.name, Key=self.key(url))
        with response["Body"] as body:
            return body.read()

    def assert_completed(self, url: str, data: bytes) -> None:
        """One object holding exactly `data` beside its `.info`; nothing of the upload left in progress."""
        assert self.keys_of(url) == [self.key(url), self.key(url) + ".info"]
        assert self.object(url) == data
        assert self.multipart_uploads(url) == []


@dataclass
class S3Backend:
    """A moto server and one boto3 client for looking into it."""

    server: S3Server
    client: Any

    def new_bucket(self, prefix: str = "") -> Bucket:
        name = f"tusd-py-{uuid.uuid4().hex[:20]}"
        self.client.create_bucket(Bucket=name)
        return Bucket(self.server, self.client, name, prefix)


def s3_backend(log_path: Path, min_part_size: int | None = None) -> Iterator[S3Backend]:
    server = start_s3_server(log_path, min_part_size=min_part_size)
    client = server.client()
    try:
        yield S3Backend(server, client)
    finally:
        client.close()
        server.stop()


@pytest.fixture(scope="module")
def real_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Backend]:
    """moto with S3's real 5 MiB minimum part size."""
    yield from s3_backend(tmp_path_factory.mktemp("moto-real") / "moto.log")


@pytest.fixture(scope="module")
def small_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Backend]:
    """moto with a 64 KiB minimum part size, for tests where the size does not matter."""
    yield from s3_backend(tmp_path_factory.mktemp("moto-small") / "moto.log", SMALL_MIN_PART)


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """tusd-py takes its credentials from the environment (start_server copies os.environ)."""
    for name, value in AWS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


S3Start = Callable[..., tuple[TusServer, Bucket]]


def s3_flags(bucket: Bucket) -> tuple[str, ...]:
    flags = ("-s3-bucket", bucket.name, "-s3-endpoint", bucket.s3.endpoint)
    return flags + (("-s3-object-prefix", bucket.prefix) if bucket.prefix else ())


@pytest.fixture
def small(make_server: Callable[..., TusServer], small_s3: S3Backend) -> S3Start:
    """tusd-py with 128 KiB parts (64 KiB minimum) in a fresh bucket of the fast moto server."""

    def start(*args: str, prefix: str = "") -> tuple[TusServer, Bucket]:
        bucket = small_s3.new_bucket(prefix)
        return make_server(*s3_flags(bucket), *SMALL_PART_FLAGS, *args), bucket

    return start


@pytest.fixture
def real(make_server: Callable[..., TusServer], real_s3: S3Backend) -> S3Start:
    """tusd-py in a fresh bucket of the moto server with S3's real 5 MiB minimum part size."""

    def start(*args: str, prefix: str = "") -> tuple[TusServer, Bucket]:
        bucket = real_s3.new_bucket(prefix)
        return make_server(*s3_flags(bucket), *args), bucket

    return start


# --- 1. the core round trip --------------------------------------------------------------------------


def test_round_trip_at_the_real_minimum_part_size(real: S3Start, client: httpx.Client) -> None:
    server, bucket = real("-s3-part-size", str(REAL_MIN_PART))
    data = random_bytes(3 * REAL_MIN_PART + 2 * MiB + 123)
    metadata = f"filename {b64(b'movie.mp4')},filetype {b64(b'video/mp4')}"
    url = create(client, server, len(data), **{"Upload-Metadata": metadata})
    info = bucket.info(url)
    assert info["ID"] == upload_id(url)
    assert info["Size"] == len(data) and info["SizeIsDeferred"] is False
    assert info["Offset"] == 0  # never updated while bytes arrive: the offset comes from S3
    assert info["MetaData"] == {"filename": "movie.mp4", "filetype": "video/mp4"}
    assert info["Storage"]["Type"] == "s3store"
    assert info["Storage"]["Bucket"] == bucket.name
    assert info["Storage"]["Key"] == bucket.key(url)
    assert bucket.parts(url) == []

    # Two PATCHes below the minimum part size: the bytes wait in `.part`, opening part 1.
    offset = 0
    for size in (1 * MiB, 1 * MiB + 7):
        response = patch(client, url, offset, data[offset : offset + size])
        assert response.status_code == 204, response.text
        offset += size
        assert response.headers["upload-offset"] == str(offset)
        assert bucket.parts(url) == []
        pending = bucket.pending(url)
        assert pending is not None and (pending.size, pending.next_part) == (offset, 1)
        assert offset_of(client, url) == offset

    # Bigger than a part: the `.part` is folded in front, whole parts go up, the tail waits again.
    size = 2 * REAL_MIN_PART
    response = patch(client, url, offset, data[offset : offset + size])
    assert response.status_code == 204, response.text
    offset += size
    parts = bucket.parts(url)
    assert [(p.number, p.size) for p in parts] == [(1, REAL_MIN_PART), (2, REAL_MIN_PART)]
    pending = bucket.pending(url)
    assert pending is not None and pending.next_part == 3
    assert pending.size == offset - 2 * REAL_MIN_PART
    assert offset_of(client, url) == offset == bucket.stored_size(url)

    # The last PATCH completes the upload: one object, byte-identical.
    response = patch(client, url, offset, data[offset:])
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(len(data))
    bucket.assert_completed(url, data)
    assert client.get(url).content == data
    response = head(client, url)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(len(data))
    info = bucket.info(url)
    assert info["ID"] == upload_id(url) and info["Size"] == len(data)
    assert info["Storage"]["Key"] == bucket.key(url)
    head_object = bucket.client.head_object(Bucket=bucket.name, Key=bucket.key(url))
    assert head_object["ContentType"] == "video/mp4"


def test_object_prefix_puts_every_key_under_it(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small(prefix="tenant-a/uploads/")
    data = random_bytes(2 * SMALL_PART + 1000, seed=2)
    finished = create(client, server, len(data))
    assert patch(client, finished, 0, data).status_code == 204
    unfinished = create(client, server, len(data))
    assert patch(client, unfinished, 0, data[: SMALL_PART + 10]).status_code == 204

    keys = bucket.keys()
    assert keys and all(key.startswith("tenant-a/uploads/") for key in keys)
    assert bucket.key(unfinished) + ".part" in keys
    bucket.assert_completed(finished, data)
    assert bucket.info(finished)["Storage"]["Key"] == "tenant-a/uploads/" + upload_id(finished)
    assert bucket.stored_size(unfinished) == SMALL_PART + 10
    assert offset_of(client, unfinished) == SMALL_PART + 10
    assert client.get(finished).content == data


# --- 2. parts go up while the body is still arriving ------------------------------------------------


def test_parts_go_up_while_the_body_arrives_and_a_cut_keeps_them(real: S3Start, client: httpx.Client) -> None:
    # Real part sizes: the body reader hands bytes over in blocks of about 1 MiB, so a stalled
    # request holds back up to that much; parts this small would hide nothing.
    server, bucket = real("-s3-part-size", str(REAL_MIN_PART))
    data = random_bytes(4 * REAL_MIN_PART, seed=3)
    url = create(client, server, len(data))
    sent = 2 * REAL_MIN_PART + 3 * MiB // 2 + 17  # two whole parts and a tail below the minimum
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": OCTET, "Content-Length": str(len(data))}
    with RawRequest(server, "PATCH", url, headers) as request:
        request.send(data[:sent])
        # The request is still open (the rest of its body never comes), yet S3 has the parts.
        wait_for(lambda: len(bucket.parts(url)) >= 2, what="two parts uploaded during the request")
        assert [(p.number, p.size) for p in bucket.parts(url)] == [(1, REAL_MIN_PART), (2, REAL_MIN_PART)]
    # The connection is cut: what arrived is kept, and the offset is exactly what S3 holds.
    wait_for(lambda: bucket.stored_size(url) == sent, what="the tail of the cut request in S3")
    assert offset_of(client, url) == sent
    pending = bucket.pending(url)
    assert pending is not None and pending.size == sent - 2 * REAL_MIN_PART and pending.next_part == 3

    response = patch(client, url, sent, data[sent:])
    assert response.status_code == 204, response.text
    bucket.assert_completed(url, data)
    assert client.get(url).content == data


# --- 3. per-request checksums ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_request_checksum_stores_only_matching_bodies(small: S3Start, client: httpx.Client, algorithm: str) -> None:
    server, bucket = small()
    data = random_bytes(4 * SMALL_PART + 99, seed=4)
    url = create(client, server, len(data))
    first = SMALL_PART + 500  # a part and a `.part`
    response = patch(client, url, 0, data[:first], **upload_checksum(algorithm, data[:first]))
    assert response.status_code == 204, response.text
    before = (bucket.parts(url), bucket.pending(url))
    assert len(before[0]) == 1 and before[1] is not None

    # A wrong checksum on a body spanning several parts: 460, and S3 is as it was.
    body = data[first : first + 2 * SMALL_PART]
    response = patch(client, url, first, body, **upload_checksum(algorithm, body[:-1] + b"!"))
    assert response.status_code == 460, response.text
    assert response.text.startswith("ERR_CHECKSUM_MISMATCH")
    assert (bucket.parts(url), bucket.pending(url)) == before
    assert offset_of(client, url) == first

    response = patch(client, url, first, body, **upload_checksum(algorithm, body))
    assert response.status_code == 204, response.text
    assert offset_of(client, url) == first + len(body) == bucket.stored_size(url)
    rest = data[first + len(body) :]
    response = patch(client, url, first + len(body), rest, **upload_checksum(algorithm, rest))
    assert response.status_code == 204, response.text
    bucket.assert_completed(url, data)


# --- 4. whole-file checksums declared at creation --------------------------------------------------


def test_whole_file_checksum_matching(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    data = random_bytes(3 * SMALL_PART + 4321, seed=5)
    declared = f"sha256 {hashlib.sha256(data).hexdigest()}"
    url = create(client, server, len(data), **{"Upload-Metadata": f"checksum {b64(declared.encode())}"})
    for start in range(0, len(data), SMALL_PART + 1000):
        response = patch(client, url, start, data[start : start + SMALL_PART + 1000])
        assert response.status_code == 204, response.text
    bucket.assert_completed(url, data)
    response = client.get(url)
    assert response.content == data
    assert response.headers["repr-digest"] == sha256_field(data)


def test_whole_file_checksum_mismatch_resets_the_upload(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    data = random_bytes(3 * SMALL_PART + 4321, seed=6)
    wrong = data[:-1] + bytes([data[-1] ^ 1])
    url = create(client, server, len(data), **{"Repr-Digest": sha256_field(data)})
    first_multipart = bucket.multipart_uploads(url)

    half = len(data) // 2
    assert patch(client, url, 0, wrong[:half]).status_code == 204
    response = patch(client, url, half, wrong[half:])
    assert response.status_code == 460, response.text
    assert response.text.startswith("ERR_CHECKSUM_MISMATCH")

    # Back to offset 0, nothing of the wrong bytes left: a new, empty multipart upload.
    assert offset_of(client, url) == 0
    assert client.get(url).status_code == 404
    assert bucket.keys_of(url) == [bucket.key(url) + ".info"]
    assert bucket.parts(url) == [] and bucket.pending(url) is None
    assert bucket.multipart_uploads(url) != first_multipart

    assert patch(client, url, 0, data[:half]).status_code == 204
    response = patch(client, url, half, data[half:])
    assert response.status_code == 204, response.text
    bucket.assert_completed(url, data)
    assert client.get(url).headers["repr-digest"] == sha256_field(data)


def test_undeclared_upload_reports_sha256_only_when_asked(small: S3Start, client: httpx.Client) -> None:
    # Nothing declared, nothing hashed while the bytes arrive: the sha-256 a client asks for is
    # computed from the stored object once, then recorded in the `.info`.
    server, bucket = small()
    data = random_bytes(2 * SMALL_PART + 777, seed=7)
    url = create(client, server, len(data))
    assert patch(client, url, 0, data).status_code == 204
    bucket.assert_completed(url, data)
    assert bucket.info(url)["Finished"] is True and "Digests" not in bucket.info(url)
    unasked = client.get(url)
    assert unasked.content == data and "repr-digest" not in unasked.headers
    asked = client.get(url, headers={"Want-Repr-Digest": "sha-256=10"})
    assert asked.content == data and asked.headers["repr-digest"] == sha256_field(data)
    assert bucket.info(url)["Digests"] == {"sha256": b64(hashlib.sha256(data).digest())}
    assert head(client, url).headers["repr-digest"] == sha256_field(data)
    bucket.assert_completed(url, data)  # recording the digest left the object as it was


# --- 5. termination ----------------------------------------------------------------------------------


def test_termination_removes_everything(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    data = random_bytes(2 * SMALL_PART + 3000, seed=7)
    unfinished = create(client, server, 10 * SMALL_PART)
    assert patch(client, unfinished, 0, data).status_code == 204
    assert bucket.parts(unfinished) and bucket.pending(unfinished)
    finished = create(client, server, len(data))
    assert patch(client, finished, 0, data).status_code == 204
    bucket.assert_completed(finished, data)

    for url in (unfinished, finished):
        response = client.delete(url, headers=TUS)
        assert response.status_code == 204, response.text
        assert head(client, url).status_code == 404
        assert bucket.keys_of(url) == []
        assert bucket.multipart_uploads(url) == []
    assert bucket.keys() == []
    assert bucket.multipart_uploads() == []


# --- 6. concatenation --------------------------------------------------------------------------------


def partial_upload(client: httpx.Client, server: TusServer, data: bytes) -> str:
    response = client.post(
        server.url,
        content=data,
        headers={**TUS, "Upload-Concat": "partial", "Upload-Length": str(len(data)), "Content-Type": OCTET},
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == str(len(data))
    return response.headers["location"]


def concatenate(client: httpx.Client, server: TusServer, urls: list[str]) -> str:
    response = client.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
    assert response.status_code == 201, response.text
    return response.headers["location"]


def test_concatenation_of_large_partials_copies_parts(real: S3Start, client: httpx.Client) -> None:
    server, bucket = real()  # 50 MiB parts: bytes going through tusd-py would make one part
    pieces = [random_bytes(REAL_MIN_PART + 11, seed=8), random_bytes(REAL_MIN_PART, seed=9), b"tail" * 100]
    final = concatenate(client, server, [partial_upload(client, server, piece) for piece in pieces])
    data = b"".join(pieces)
    response = head(client, final)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(len(data))
    assert client.get(final).content == data
    bucket.assert_completed(final, data)
    # One part copied from each partial (a multipart ETag ends with its number of parts).
    etag = bucket.client.head_object(Bucket=bucket.name, Key=bucket.key(final))["ETag"]
    assert etag.strip('"').endswith("-3"), etag


def test_concatenation_by_copy_verifies_a_declared_checksum(real: S3Start, client: httpx.Client) -> None:
    # S3 copies the parts without the bytes passing through tusd-py: a declared digest is
    # still computed from them, and a wrong one removes the final upload (460).
    server, bucket = real()
    pieces = [random_bytes(REAL_MIN_PART + 3, seed=13), random_bytes(999, seed=14)]
    urls = [partial_upload(client, server, piece) for piece in pieces]
    data = b"".join(pieces)
    locations = []
    for declared, status in ((hashlib.sha256(data).hexdigest(), 201), (hashlib.sha256(b"other").hexdigest(), 460)):
        metadata = f"checksum {b64(f'sha256 {declared}'.encode())}"
        response = client.post(
            server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(urls), "Upload-Metadata": metadata}
        )
        assert response.status_code == status, response.text
        locations.append(response.headers.get("location"))
    final, refused = locations
    assert refused is None
    bucket.assert_completed(final, data)
    assert head(client, final).headers["repr-digest"] == sha256_field(data)  # the declared digest, recorded
    assert len([key for key in bucket.keys() if key.endswith(".info")]) == len(urls) + 1  # the refused one left nothing


def test_concatenation_of_small_partials_goes_through_the_server(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    pieces = [random_bytes(1000, seed=10), b"", random_bytes(SMALL_PART + 5, seed=11), random_bytes(700, seed=12)]
    urls = [partial_upload(client, server, piece) for piece in pieces]
    final = concatenate(client, server, urls)
    data = b"".join(pieces)
    response = head(client, final)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(len(data))
    assert client.get(final).content == data
    bucket.assert_completed(final, data)
    for url, piece in zip(urls, pieces, strict=True):  # the partials stay
        assert client.get(url).content == piece


# --- 7. deferred length ------------------------------------------------------------------------------


def test_deferred_length_declared_with_the_last_bytes(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    data = random_bytes(3 * SMALL_PART + 77, seed=13)
    url = create(client, server, None)
    first = 2 * SMALL_PART + 50
    assert patch(client, url, 0, data[:first]).status_code == 204
    response = head(client, url)
    assert response.headers["upload-defer-length"] == "1"
    assert int(response.headers["upload-offset"]) == first == bucket.stored_size(url)
    response = patch(client, url, first, data[first:], **{"Upload-Length": str(len(data))})
    assert response.status_code == 204, response.text
    bucket.assert_completed(url, data)
    assert client.get(url).content == data


@pytest.mark.parametrize(
    "size", [1000, SMALL_PART + 1000, 2 * SMALL_PART], ids=["part-only", "parts-and-part", "parts-only"]
)
def test_deferred_length_declared_at_the_offset_completes(small: S3Start, client: httpx.Client, size: int) -> None:
    server, bucket = small()
    data = random_bytes(size, seed=14)
    url = create(client, server, None)
    assert patch(client, url, 0, data).status_code == 204
    assert bucket.stored_size(url) == size
    response = patch(client, url, size, b"", **{"Upload-Length": str(size)})
    assert response.status_code == 204, response.text
    response = head(client, url)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(size)
    bucket.assert_completed(url, data)
    assert client.get(url).content == data


def test_deferred_length_declared_at_the_offset_at_the_real_minimum_part_size(
    real: S3Start, client: httpx.Client
) -> None:
    # The `.part` becomes the last part, after a full-size one: S3's minimum allows that.
    server, bucket = real("-s3-part-size", str(REAL_MIN_PART))
    data = random_bytes(REAL_MIN_PART + 1000, seed=19)
    url = create(client, server, None)
    assert patch(client, url, 0, data).status_code == 204
    pending = bucket.pending(url)
    assert [p.size for p in bucket.parts(url)] == [REAL_MIN_PART] and pending is not None and pending.size == 1000
    response = patch(client, url, len(data), b"", **{"Upload-Length": str(len(data))})
    assert response.status_code == 204, response.text
    bucket.assert_completed(url, data)
    assert client.get(url).content == data


# --- 8. empty uploads --------------------------------------------------------------------------------


def test_empty_upload_is_complete_at_once(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    url = create(client, server, 0)
    response = head(client, url)
    assert response.headers["upload-offset"] == response.headers["upload-length"] == "0"
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == b""
    bucket.assert_completed(url, b"")


# --- 9. downloads -----------------------------------------------------------------------------------


def test_downloads_serve_ranges_from_s3(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    data = random_bytes(3 * SMALL_PART + 999, seed=15)
    url = create(client, server, len(data))
    assert patch(client, url, 0, data).status_code == 204
    size = len(data)

    whole = client.get(url)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-length"] == str(size)
    etag = whole.headers["etag"]

    ranged = client.get(url, headers={"Range": f"bytes={SMALL_PART - 10}-{2 * SMALL_PART + 9}"})
    assert ranged.status_code == 206
    assert ranged.content == data[SMALL_PART - 10 : 2 * SMALL_PART + 10]
    assert ranged.headers["content-range"] == f"bytes {SMALL_PART - 10}-{2 * SMALL_PART + 9}/{size}"

    suffix = client.get(url, headers={"Range": "bytes=-1234"})
    assert suffix.status_code == 206
    assert suffix.content == data[-1234:]
    assert suffix.headers["content-range"] == f"bytes {size - 1234}-{size - 1}/{size}"

    unsatisfiable = client.get(url, headers={"Range": f"bytes={size}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"

    current = client.get(url, headers={"Range": "bytes=5-9", "If-Range": etag})
    assert current.status_code == 206 and current.content == data[5:10]
    stale = client.get(url, headers={"Range": "bytes=5-9", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 200
    assert stale.content == data


def test_download_of_an_unfinished_upload_is_404(small: S3Start, client: httpx.Client) -> None:
    server, _ = small()
    url = create(client, server, 10 * SMALL_PART)
    assert patch(client, url, 0, random_bytes(SMALL_PART + 5)).status_code == 204
    response = client.get(url)
    assert response.status_code == 404
    assert response.text.startswith("ERR_UPLOAD_NOT_FINISHED")


# --- 10. expiration ----------------------------------------------------------------------------------


def start_unfinished(client: httpx.Client, server: TusServer, bucket: Bucket) -> str:
    """An upload with parts and a `.part` that will never be finished."""
    url = create(client, server, 10 * SMALL_PART)
    assert patch(client, url, 0, random_bytes(SMALL_PART + 5)).status_code == 204
    assert len(bucket.parts(url)) == 1 and bucket.pending(url) is not None
    return url


def test_expired_upload_answers_410(small: S3Start, client: httpx.Client) -> None:
    # The sweeper runs at start-up and then not again within the test: the expired upload stays.
    server, bucket = small("-expiration", "2s", "-expiration-sweep-interval", "1h")
    url = start_unfinished(client, server, bucket)
    wait_for(lambda: head(client, url).status_code == 410, what="the upload to expire")
    response = patch(client, url, SMALL_PART + 5, b"more")
    assert response.status_code == 410
    assert response.text.startswith("ERR_UPLOAD_EXPIRED")
    assert bucket.stored_size(url) == SMALL_PART + 5  # nothing written, nothing removed


def test_sweeper_removes_expired_uploads_from_s3(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small("-expiration", "2s", "-expiration-sweep-interval", "500ms")
    finished = create(client, server, 4)
    assert patch(client, finished, 0, b"done").status_code == 204
    url = start_unfinished(client, server, bucket)

    wait_for(lambda: bucket.keys_of(url) == [] and bucket.multipart_uploads(url) == [], what="the sweeper")
    assert head(client, url).status_code == 404
    bucket.assert_completed(finished, b"done")  # a finished upload never expires
    assert client.get(finished).content == b"done"


def test_expiry_candidates_come_from_one_listing(small_s3: S3Backend) -> None:
    # The sweeper looks at unfinished uploads only: a completed object, or a recent .info or
    # .part, rules an upload out without reading it. Keys of different ids interleave in the
    # sorted listing ("ab", "ab-c.info", "ab.info"): each id is still judged on all its keys.
    bucket = small_s3.new_bucket("")
    names = ["ab", "ab.info", "ab-c.info", "ab-c.part", "done", "done.info", "old.info", "stray.txt", "x/y.info"]
    for name in names:
        bucket.client.put_object(Bucket=bucket.name, Key=name, Body=b"")
    store = S3Store(S3Settings(bucket=bucket.name, endpoint=bucket.s3.endpoint), client=bucket.client)

    async def candidates(changed_before: float) -> list[str]:
        return sorted([upload_id async for upload_id in store.expiry_candidates(changed_before)])

    assert anyio.run(candidates, time.time() + 60) == ["ab-c", "old"]
    assert anyio.run(candidates, time.time() - 3600) == []


# --- 11. a real client -------------------------------------------------------------------------------


def test_tuspy_uploads_in_chunks_below_the_part_size(real: S3Start, client: httpx.Client) -> None:
    # tuspy checksums every PATCH: each body is held back until its checksum matched, with the
    # `.part` of the previous PATCH folded in front.
    server, bucket = real("-s3-part-size", str(REAL_MIN_PART))
    data = random_bytes(12 * MiB + 4567, seed=16)
    uploader = tus_client.TusClient(server.url).uploader(
        file_stream=io.BytesIO(data), chunk_size=3 * MiB, metadata={"filename": "big.bin"}, upload_checksum=True
    )
    uploader.upload()
    url = uploader.url
    assert url is not None
    bucket.assert_completed(url, data)
    assert client.get(url).content == data


def test_tus_js_client_parallel_uploads_become_one_object(real: S3Start, client: httpx.Client, tmp_path: Path) -> None:
    # Two partials of 6 MiB (each above the minimum part size): the final is built with part copies.
    server, bucket = real()
    source = tmp_path / "movie.bin"
    data = write_random_file(source, 12 * MiB + 99, seed=17)
    result = run_node("upload.mjs", server.url, str(source), json.dumps({"parallelUploads": 2}))
    url = result["url"]
    assert head(client, url).headers["upload-concat"].startswith("final;")
    bucket.assert_completed(url, data)
    assert client.get(url).content == data


def test_ietf_draft_upload_resumes_on_s3(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small()
    data = random_bytes(700 * KiB, seed=18)
    draft = {"Upload-Draft-Interop-Version": "6"}
    created = client.post(server.url, content=data[: 300 * KiB], headers={**draft, "Upload-Complete": "?0"})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    assert client.head(url, headers=draft).headers["upload-offset"] == str(300 * KiB)
    finished = client.patch(
        url,
        content=data[300 * KiB :],
        headers={
            **draft,
            "Upload-Complete": "?1",
            "Upload-Offset": str(300 * KiB),
            "Content-Type": "application/partial-upload",
        },
    )
    assert finished.status_code in (200, 201, 204), finished.text
    bucket.assert_completed(url, data)


# --- 12. start-up ------------------------------------------------------------------------------------


def run_to_exit(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m tusd_py ...` that is expected to refuse to start."""
    command = [sys.executable, "-m", "tusd_py", "-host", "127.0.0.1", "-port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=EXIT_TIMEOUT, check=False)


def test_workers_without_shared_locks_are_refused(tmp_path: Path) -> None:
    result = run_to_exit("-upload-dir", str(tmp_path), "-s3-bucket", "b", "-workers", "2")
    assert result.returncode != 0
    assert "-redis-url" in result.stderr and "-single-instance" in result.stderr


def test_missing_bucket_is_refused(real_s3: S3Backend, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_to_exit(
        "-upload-dir", str(tmp_path), "-s3-bucket", "no-such-bucket", "-s3-endpoint", real_s3.server.endpoint
    )
    assert result.returncode == 1
    assert "cannot use S3 bucket 'no-such-bucket'" in result.stderr and real_s3.server.endpoint in result.stderr
    assert "no such bucket" in result.stderr
    assert time.monotonic() - started < 15


def test_unreachable_endpoint_is_refused(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_to_exit("-upload-dir", str(tmp_path), "-s3-bucket", "b", "-s3-endpoint", endpoint)
    assert result.returncode == 1
    assert "cannot use S3 bucket" in result.stderr and endpoint in result.stderr
    assert time.monotonic() - started < 15


def test_single_instance_workers_serve(small: S3Start, client: httpx.Client) -> None:
    server, bucket = small("-workers", "2", "-single-instance")
    data = random_bytes(2 * SMALL_PART + 10, seed=17)
    url = create(client, server, len(data))
    assert patch(client, url, 0, data[:1000]).status_code == 204
    assert patch(client, url, 1000, data[1000:]).status_code == 204
    bucket.assert_completed(url, data)
    assert client.get(url).content == data


# --- 13. memory --------------------------------------------------------------------------------------


def test_large_upload_keeps_memory_flat(real: S3Start, client: httpx.Client) -> None:
    server, bucket = real()  # the default 50 MiB parts
    size = 256 * MiB
    # Warm every request path (and boto3's part upload) before measuring.
    warm = create(client, server, REAL_MIN_PART + 1)
    assert patch(client, warm, 0, bytes(REAL_MIN_PART + 1)).status_code == 204
    url = create(client, server, size)
    before = proc_status_kib(server.process.pid)
    body = StreamedBody(size)
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": OCTET, "Content-Length": str(size)}
    response = client.patch(url, content=body, headers=headers)
    after = proc_status_kib(server.process.pid)
    assert response.status_code == 204, response.text
    growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    assert growth_mib < 40, f"server RSS grew by {growth_mib:.1f} MiB ({before} -> {after})"

    stored = hashlib.sha256()
    with client.stream("GET", url) as download:
        assert download.status_code == 200
        for block in download.iter_bytes(MiB):
            stored.update(block)
    assert stored.hexdigest() == body.sha256.hexdigest()
    assert bucket.multipart_uploads(url) == []
