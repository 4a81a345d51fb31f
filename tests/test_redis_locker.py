"""The Redis locker against a real redis-server: two RedisLocker instances on one Redis stand
in for two server instances. Locks exclude each other across instances; a release request
made on one instance reaches the holder on the other promptly; waiters that must not
interrupt only wait; locks outlive their TTL while held and free themselves when their
holder dies; an unreachable Redis gives a quick 503 and run() recovers when it returns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import run_bounded
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis_server import RedisServer

from tusd_py.errors import TusError
from tusd_py.lockers import RedisLocker

PROMPT = 3.0  # a stuck holder on another instance hears a request within this
BOUND = 10.0  # no scenario step waits longer than this
TTL = 0.6  # short TTL where its expiry or renewal is the point


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def make(url: str, **options: Any) -> RedisLocker:
    return RedisLocker(url, **{"acquirer_poll": 0.01, "io_timeout": 1.0, **options})


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_bounded(scenario, 2 * BOUND)


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(url, decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        yield client
    finally:
        await client.aclose()


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = BOUND) -> None:
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(0.01)


async def wait_for_listeners(url: str, channel: str, count: int, timeout: float = BOUND) -> None:
    """Until `count` instances' run() are subscribed to the release channel."""
    async with raw_client(url) as client:

        async def subscribed() -> bool:
            [(_, listeners)] = await client.pubsub_numsub(channel)
            return listeners >= count

        await wait_until(subscribed, timeout)


async def published(channel: PubSub) -> list[str]:
    """The messages published so far on a subscribed channel."""
    messages = []
    while (message := await channel.get_message(timeout=0.05)) is not None:
        if message["type"] == "message":
            messages.append(message["data"])
    return messages


@asynccontextmanager
async def running(url: str, *lockers: RedisLocker) -> AsyncIterator[None]:
    """The lockers' run() (as the app's lifespan runs it), listening before the block starts."""
    async with anyio.create_task_group() as background:
        for locker in lockers:
            background.start_soon(locker.run)
        await wait_for_listeners(url, lockers[0].channel, len(lockers))
        yield
        background.cancel_scope.cancel()


class StuckHolder:
    """A request holding an upload on one instance, stuck until asked to let go (or told to)."""

    def __init__(self, locker: RedisLocker, upload_id: str) -> None:
        self.locker = locker
        self.upload_id = upload_id
        self.holding = anyio.Event()
        self.asked = anyio.Event()
        self.let_go = anyio.Event()
        self.done = anyio.Event()
        self.heeds_requests = True

    def on_release_request(self) -> None:
        self.asked.set()
        if self.heeds_requests:
            self.let_go.set()

    async def hold(self) -> None:
        try:
            async with self.locker.hold(self.upload_id, self.on_release_request):
                self.holding.set()
                with anyio.fail_after(BOUND):
                    await self.let_go.wait()
        finally:
            self.done.set()

    async def start(self, group: anyio.abc.TaskGroup) -> StuckHolder:
        group.start_soon(self.hold)
        with anyio.fail_after(BOUND):
            await self.holding.wait()
        return self


def assert_tus_error(error: BaseException, status: int, code: str) -> None:
    assert isinstance(error, TusError), repr(error)
    assert (error.status, error.code) == (status, code)


# --- exclusion and release requests --------------------------------------------------------


def test_no_two_holders_across_instances(redis_url: str) -> None:
    a, b = make(redis_url), make(redis_url)
    holders = {"one": 0, "two": 0}
    most = {"one": 0, "two": 0}
    holds = 0

    async def worker(locker: RedisLocker, upload_id: str, interrupt: bool) -> None:
        nonlocal holds
        for _ in range(3):
            async with locker.hold(upload_id, interrupt=interrupt):
                holders[upload_id] += 1
                most[upload_id] = max(most[upload_id], holders[upload_id])
                await anyio.sleep(0.002)  # give another holder the chance to overlap
                holders[upload_id] -= 1
            holds += 1

    async def scenario() -> None:
        async with running(redis_url, a, b):
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as group:
                    for locker in (a, b):
                        for upload_id in holders:
                            for n in range(5):
                                group.start_soon(worker, locker, upload_id, n % 2 == 0)
            async with raw_client(redis_url) as client:
                assert await client.keys("tusd-py:lock:*") == []  # every release deleted its key

    run(scenario)
    assert most == {"one": 1, "two": 1}
    assert holds == 2 * 2 * 5 * 3


def test_release_request_reaches_the_holder_on_another_instance(redis_url: str) -> None:
    a, b = make(redis_url), make(redis_url)

    async def scenario() -> None:
        async with running(redis_url, a, b), anyio.create_task_group() as group:
            stuck = await StuckHolder(a, "up").start(group)
            started = anyio.current_time()
            async with b.hold("up"):
                waited = anyio.current_time() - started
                assert stuck.done.is_set()
            assert stuck.asked.is_set()
            assert waited < PROMPT

    run(scenario)


def test_a_queued_local_request_asks_through_the_waiter_ahead_of_it(redis_url: str) -> None:
    # On B, a waiter that may not interrupt (a concatenation) is ahead of one that may (a
    # HEAD): the HEAD's request reaches A's holder on its behalf, and the order is kept.
    a, b = make(redis_url), make(redis_url)
    order: list[str] = []

    async def take(name: str, interrupt: bool) -> None:
        async with b.hold("up", interrupt=interrupt):
            order.append(name)

    async def scenario() -> None:
        async with running(redis_url, a, b), anyio.create_task_group() as group:
            stuck = await StuckHolder(a, "up").start(group)
            group.start_soon(take, "patient", False)
            await anyio.wait_all_tasks_blocked()  # the patient waiter is in line, polling Redis
            assert not stuck.asked.is_set()
            started = anyio.current_time()
            await take("impatient", True)
            assert anyio.current_time() - started < PROMPT
            assert stuck.asked.is_set()

    run(scenario)
    assert order == ["patient", "impatient"]


def test_a_waiter_that_may_not_interrupt_only_waits(redis_url: str) -> None:
    a, b = make(redis_url), make(redis_url)

    async def scenario() -> None:
        async with running(redis_url, a, b), anyio.create_task_group() as group, raw_client(redis_url) as client:
            channel = client.pubsub()
            try:
                await channel.subscribe(a.channel)
                stuck = await StuckHolder(a, "up").start(group)
                acquired = anyio.Event()

                async def patient() -> None:
                    async with b.hold("up", interrupt=False):
                        acquired.set()

                group.start_soon(patient)
                # A late request, for an earlier holder of the upload, must not stop this one.
                await client.publish(a.channel, "0123456789abcdef0123456789abcdef up")
                # An absence check, bounded: several request intervals pass without a request.
                with anyio.move_on_after(4 * b.request_interval):
                    await stuck.asked.wait()
                assert not stuck.asked.is_set()
                assert not acquired.is_set()
                assert await published(channel) == ["0123456789abcdef0123456789abcdef up"]
                stuck.let_go.set()
                with anyio.fail_after(1.0):
                    await acquired.wait()
            finally:
                await channel.aclose()

    run(scenario)


def test_acquire_timeout_is_500_lock_timeout(redis_url: str) -> None:
    a, b = make(redis_url), make(redis_url, acquire_timeout=0.5)

    async def scenario() -> None:
        async with running(redis_url, a, b), anyio.create_task_group() as group:
            stuck = StuckHolder(a, "up")
            stuck.heeds_requests = False  # asked, but it cannot let go
            await stuck.start(group)
            started = anyio.current_time()
            with pytest.raises(TusError) as raised:
                async with b.hold("up"):
                    pytest.fail("took a held lock")
            waited = anyio.current_time() - started
            assert_tus_error(raised.value, 500, "ERR_LOCK_TIMEOUT")
            assert 0.5 <= waited < 2.0
            assert stuck.asked.is_set()
            stuck.let_go.set()

    run(scenario)


# --- TTL: renewal, dead holders, lost locks -------------------------------------------------


def test_a_held_lock_outlives_its_ttl(redis_url: str) -> None:
    a, b = make(redis_url, ttl=TTL), make(redis_url, ttl=TTL, acquire_timeout=2.5 * TTL)

    async def scenario() -> None:
        async with running(redis_url, a, b), anyio.create_task_group() as group, raw_client(redis_url) as client:
            stuck = await StuckHolder(a, "up").start(group)
            with pytest.raises(TusError) as raised:
                async with b.hold("up", interrupt=False):
                    pytest.fail("took a lock that was renewed")
            assert_tus_error(raised.value, 500, "ERR_LOCK_TIMEOUT")
            assert 0 < await client.pttl(a.lock_key("up")) <= TTL * 1000
            assert not stuck.asked.is_set()
            stuck.let_go.set()
            await stuck.done.wait()
            assert not await client.exists(a.lock_key("up"))

    run(scenario)


def test_a_dead_holders_lock_frees_after_its_ttl(redis_url: str) -> None:
    a, b = make(redis_url, ttl=TTL), make(redis_url)

    async def scenario() -> None:
        try:
            async with running(redis_url, b), anyio.create_task_group() as group, raw_client(redis_url) as client:
                a_alive = anyio.CancelScope()

                async def run_a() -> None:
                    with a_alive:
                        await a.run()

                group.start_soon(run_a)
                stuck = await StuckHolder(a, "up").start(group)
                # A's process dies: no more renewals or listening, its connections closed.
                a_alive.cancel()
                started = anyio.current_time()
                async with b.hold("up"):
                    waited = anyio.current_time() - started
                    assert waited < TTL + 0.5
                    assert not stuck.asked.is_set()
                    token = await client.get(b.lock_key("up"))
                    # A's late release must leave B's lock alone.
                    stuck.let_go.set()
                    await stuck.done.wait()
                    assert await client.get(b.lock_key("up")) == token
                assert not await client.exists(b.lock_key("up"))
        finally:
            await a.aclose()  # A's late release reconnected

    run(scenario)


def test_a_holder_that_lost_its_lock_is_stopped(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    a = make(redis_url, ttl=TTL)

    async def scenario() -> None:
        async with running(redis_url, a), anyio.create_task_group() as group, raw_client(redis_url) as client:
            stuck = await StuckHolder(a, "up").start(group)
            await client.set(a.lock_key("up"), "someone-else", px=5000)  # as after an expiry and a takeover
            with anyio.fail_after(TTL):
                await stuck.done.wait()
            assert await client.get(a.lock_key("up")) == "someone-else"

    with caplog.at_level(logging.WARNING, logger="tusd_py"):
        run(scenario)
    assert "lost the lock of upload up (it expired or another holder took it)" in caplog.text


# --- Redis outages ------------------------------------------------------------------------


def test_redis_down_is_a_quick_503_and_run_recovers(redis_server: RedisServer) -> None:
    url = redis_server.url
    a, b = make(url, ttl=TTL), make(url)

    async def scenario() -> None:
        async with running(url, a, b), anyio.create_task_group() as group:
            stuck = await StuckHolder(a, "up").start(group)
            await anyio.to_thread.run_sync(redis_server.stop)

            # A cannot renew: its holder stops before the lock could expire unseen.
            with anyio.fail_after(TTL):
                await stuck.done.wait()
            assert stuck.asked.is_set()

            for interrupt in (True, False):
                started = anyio.current_time()
                with pytest.raises(TusError) as raised:
                    async with b.hold("other", interrupt=interrupt):
                        pytest.fail("took a lock without Redis")
                assert_tus_error(raised.value, 503, "ERR_LOCKER_UNAVAILABLE")
                assert anyio.current_time() - started < 1.0

            await anyio.to_thread.run_sync(redis_server.start)  # same port, empty
            async with b.hold("other"):
                pass
            # Both run()s listen again, and a release request crosses instances as before.
            await wait_for_listeners(url, a.channel, 2)
            stuck = await StuckHolder(a, "up").start(group)
            started = anyio.current_time()
            async with b.hold("up"):
                assert anyio.current_time() - started < PROMPT
            assert stuck.asked.is_set()

    run(scenario)
