"""The body reader's block memory: bodies in flight share BLOCK_BUDGET, and a body that
started alone gives up its whole blocks once others arrive (W5's peak memory)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from conftest import run_bounded

import tusd_py.body
from tusd_py.body import (
    BLOCK_BUDGET,
    BLOCK_SIZE,
    CROWD,
    FIRST_SHARED_BLOCK,
    MIN_BLOCK_SIZE,
    BodyReader,
    crowded,
)
from tusd_py.stores.base import Buffer

MESSAGE = 64 * 1024
BOUND = 10.0


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_bounded(scenario, BOUND)


async def endless_body() -> dict[str, object]:
    """An ASGI receive that always has another 64 KiB message."""
    return {"type": "http.request", "body": b"x" * MESSAGE, "more_body": True}


@contextmanager
def bodies(count: int) -> Iterator[list[BodyReader]]:
    """`count` bodies in flight, all closed on the way out."""
    readers = [BodyReader(endless_body, limit=1 << 40, idle_timeout=5.0) for _ in range(count)]
    try:
        yield readers
    finally:
        for reader in readers:
            reader.close()


async def block_of(body: BodyReader) -> Buffer:
    block = await body.next_block()
    assert block is not None
    return block


def test_a_body_alone_gets_whole_blocks() -> None:
    async def scenario() -> None:
        with bodies(1) as [body]:
            assert len(await block_of(body)) == BLOCK_SIZE

    run(scenario)


def test_a_body_that_started_alone_shrinks_its_blocks_when_others_arrive() -> None:
    async def scenario() -> None:
        with bodies(1) as [first]:
            block = await block_of(first)
            assert len(block) == BLOCK_SIZE
            with bodies(7) as others:
                first.recycle(block)  # written: a whole block is no longer what eight bodies may hold
                shared = BLOCK_BUDGET // 8
                assert len(await block_of(first)) == shared
                assert [len(await block_of(body)) for body in others] == [shared] * 7

    run(scenario)


def test_blocks_never_shrink_below_the_minimum() -> None:
    async def scenario() -> None:
        with bodies(4 * BLOCK_BUDGET // MIN_BLOCK_SIZE) as crowd:
            assert len(await block_of(crowd[0])) == MIN_BLOCK_SIZE

    run(scenario)


def test_bodies_that_finish_give_their_share_back() -> None:
    async def scenario() -> None:
        with bodies(8):
            pass
        with bodies(1) as [body]:
            assert len(await block_of(body)) == BLOCK_SIZE

    run(scenario)


def test_spare_whole_blocks_are_let_go_once_bodies_share_smaller_ones() -> None:
    async def scenario() -> None:
        with bodies(1) as [body]:
            body.recycle(await block_of(body))  # written: kept as a spare when the body closes
        assert tusd_py.body._spares
        with bodies(3) as crowd:
            assert len(await block_of(crowd[0])) < BLOCK_SIZE
            assert not tusd_py.body._spares

    run(scenario)


def test_a_body_that_starts_among_others_takes_a_small_first_block() -> None:
    """Bodies that start together would each take a whole first block before they know of
    each other (W5's peak memory); later blocks get the full share again."""

    async def scenario() -> None:
        with bodies(1) as [alone]:
            assert len(await block_of(alone)) == BLOCK_SIZE
            with bodies(1) as [joining]:
                assert len(await block_of(joining)) == FIRST_SHARED_BLOCK
                assert len(await block_of(joining)) == min(BLOCK_SIZE, BLOCK_BUDGET // 2)

    run(scenario)


def test_crowded_means_more_bodies_than_the_crowd_limit() -> None:
    async def scenario() -> None:
        with bodies(CROWD):
            assert not crowded()
            with bodies(1):
                assert crowded()
        assert not crowded()

    run(scenario)
