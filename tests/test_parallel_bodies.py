"""Many large bodies at once share the block memory (body.py): past four, the blocks of
every body shrink as others arrive, while it is being read. Every upload still ends
byte-identical in its own file, with the offset the client was told."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
from conftest import TUS, TusServer, create, head

MiB = 1 << 20
UPLOADS = 8
SIZE = 6 * MiB + 12_345  # not a whole number of blocks
CHUNK = 192 * 1024
TIMEOUT = 60.0


def chunks(seed: int) -> Iterator[bytes]:
    """The upload's bytes, generated on the fly, different for every upload."""
    rng = random.Random(seed)
    for start in range(0, SIZE, CHUNK):
        yield rng.randbytes(min(CHUNK, SIZE - start))


def upload(server: TusServer, seed: int, start: Barrier) -> tuple[str, str]:
    with httpx.Client(timeout=TIMEOUT) as client:
        url = create(client, server, SIZE)
        start.wait(timeout=TIMEOUT)
        headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
        response = client.patch(url, content=chunks(seed), headers=headers)
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(SIZE)
        assert head(client, url).headers["upload-offset"] == str(SIZE)
    expected = hashlib.sha256(b"".join(chunks(seed))).hexdigest()
    return url, expected


def test_parallel_large_bodies_end_byte_identical(server: TusServer) -> None:
    start = Barrier(UPLOADS)
    with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
        results = list(pool.map(lambda seed: upload(server, seed, start), range(UPLOADS)))
    for url, expected in results:
        stored = (server.upload_dir / url.rsplit("/", 1)[1]).read_bytes()
        assert len(stored) == SIZE
        assert hashlib.sha256(stored).hexdigest() == expected, url
