"""The body reader's block memory: bodies in flight share BLOCK_BUDGET, and a body that
started alone gives up its whole blocks once others arrive (W5's peak memory)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from tusd_py.body import BLOCK_BUDGET, BLOCK_SIZE, MIN_BLOCK_SIZE, BodyReader
from tusd_py.stores.base import Buffer

MESSAGE = 64 * 1024
BOUND = 10.0


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(BOUND):
            await scenario()

    anyio.run(bounded)


def endless_body() -> Callable[[], Awaitable[dict[str, object]]]:
    """An ASGI receive that always has another 64 KiB message."""

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"x" * MESSAGE, "more_body": True}

    return receive


def reader() -> BodyReader:
    return BodyReader(endless_body(), limit=1 << 40, idle_timeout=5.0)


async def block_of(body: BodyReader) -> Buffer:
    block = await body.next_block()
    assert block is not None
    return block


def test_a_body_alone_gets_whole_blocks() -> None:
    async def scenario() -> None:
        body = reader()
        try:
            assert len(await block_of(body)) == BLOCK_SIZE
        finally:
            body.close()

    run(scenario)


def test_a_body_that_started_alone_shrinks_its_blocks_when_others_arrive() -> None:
    async def scenario() -> None:
        first = reader()
        others: list[BodyReader] = []
        try:
            block = await block_of(first)
            assert len(block) == BLOCK_SIZE
            others = [reader() for _ in range(7)]
            first.recycle(block)  # written: a whole block is no longer what eight bodies may hold
            shared = BLOCK_BUDGET // 8
            assert len(await block_of(first)) == shared
            assert [len(await block_of(body)) for body in others] == [shared] * 7
        finally:
            for body in [first, *others]:
                body.close()

    run(scenario)


def test_blocks_never_shrink_below_the_minimum() -> None:
    async def scenario() -> None:
        bodies = [reader() for _ in range(4 * BLOCK_BUDGET // MIN_BLOCK_SIZE)]
        try:
            assert len(await block_of(bodies[0])) == MIN_BLOCK_SIZE
        finally:
            for body in bodies:
                body.close()

    run(scenario)


def test_bodies_that_finish_give_their_share_back() -> None:
    async def scenario() -> None:
        crowd = [reader() for _ in range(8)]
        for body in crowd:
            body.close()
        body = reader()
        try:
            assert len(await block_of(body)) == BLOCK_SIZE
        finally:
            body.close()

    run(scenario)
