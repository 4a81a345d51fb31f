"""Redis locker: upload locks shared by server instances on any number of hosts.

    <prefix>:lock:<id>   the lock: the current holder's random token, with a TTL
    <prefix>:release     a channel; a message "<holder token> <id>" asks that holder to let go

Within a process, requests queue on an in-process `MemoryLocker` first (as in
lockers/file.py), so only one request per upload and process talks to Redis, and a
holder in the same process hears a release request at once.

Taking the lock is `SET key token NX PX ttl`, in a script that also returns the
current holder's token (one round trip, and a retried SET whose first reply was lost
still sees that it won). Releasing deletes the key only if it still holds our token:
a holder whose lock expired never removes the next holder's. If a process dies, its
locks expire after `ttl`; while a request holds one, `run()` renews it every ttl/3
(compare-and-pexpire, one script call for all held locks). A renewal that finds the
lock gone (expired, Redis restarted empty), or that could not reach Redis for so long
that the lock may expire before the next renewal, stops the holder as a release
request would: another instance may hold the upload now. The TTL (15 s by default)
is short enough that a dead instance's locks free within one acquire timeout (20 s),
long enough that a busy event loop does not lose them.

A waiter that may interrupt publishes a release request when it starts waiting and
every `request_interval` seconds while it waits, and retries the SET every
`acquirer_poll` seconds. `run()` of every instance is subscribed to the channel and
calls the named holder's `on_release_request`. The request names the holder's token,
not just the upload, so a late message never stops a later holder (our own requests
included: this process's subscriber hears them too).

Failures never hang: every Redis call is bounded by `io_timeout` (connect and read),
with one immediate retry on a fresh connection (a pooled connection is stale after a
Redis restart). `hold()` then fails with 503 ERR_LOCKER_UNAVAILABLE; `run()` logs,
reconnects with a bounded backoff and carries on. redis.asyncio needs the asyncio
event loop (uvicorn's).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import lock_timeout, locker_unavailable
from .memory import Acquisition, SharedLocker

log = logging.getLogger("tusd_py")

T = TypeVar("T")

# KEYS[1] lock key; ARGV: our token, TTL in ms. Returns the holder's token (ours if we took it).
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return ARGV[1]
end
return redis.call('GET', KEYS[1])
"""

# KEYS[1] lock key; ARGV[1] our token. Returns 1 if we deleted our lock, 0 if it was not ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lock keys; ARGV[1] TTL in ms, ARGV[i + 1] our token for KEYS[i]. Returns 1 (renewed) or 0 per key.
_RENEW = """
local kept = {}
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[i + 1] then
        redis.call('PEXPIRE', key, ARGV[1])
        kept[i] = 1
    else
        kept[i] = 0
    end
end
return kept
"""

# What an unreachable or failing Redis raises (socket errors are mostly wrapped, not all).
_FAILURES = (RedisError, OSError)

_FIRST_BACKOFF = 0.1
_LISTEN_POLL = 1.0  # how long one read on the channel waits before looping


@dataclass
class _Held:
    token: str
    on_release_request: Callable[[], None]
    confirmed_at: float  # when a call that found the key ours was sent: it lives >= ttl from then
    lost: bool = False


class RedisLocker(SharedLocker):
    def __init__(
        self,
        url: str,
        acquire_timeout: float = 20.0,
        *,
        ttl: float = 15.0,
        key_prefix: str = "tusd-py",
        acquirer_poll: float = 0.05,
        request_interval: float = 0.25,
        io_timeout: float = 2.0,
        max_backoff: float = 2.0,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        super().__init__(acquire_timeout)
        self.ttl = ttl
        self.key_prefix = key_prefix
        self.channel = f"{key_prefix}:release"
        self.acquirer_poll = acquirer_poll
        self.request_interval = request_interval
        self.max_backoff = max_backoff
        self._ttl_ms = max(1, round(ttl * 1000))
        # A call is two attempts at most, each a connect and a read: the bound for cleanups.
        self._call_bound = 4 * io_timeout
        # Parses the URL now (a bad one fails at startup); connects on first use.
        self._redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=io_timeout,
            socket_connect_timeout=io_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._acquire_script = self._redis.register_script(_ACQUIRE)
        self._release_script = self._redis.register_script(_RELEASE)
        self._renew_script = self._redis.register_script(_RENEW)
        self._held: dict[str, _Held] = {}

    def lock_key(self, upload_id: str) -> str:
        return f"{self.key_prefix}:lock:{upload_id}"

    def discard(self, upload_id: str) -> None:
        """Nothing to forget: the lock key goes at release and nothing else is kept per upload."""

    async def run(self) -> None:
        """Hear release requests from other instances and renew held locks (runs for the app's life).

        Closes the connections when cancelled."""
        try:
            async with anyio.create_task_group() as duties:
                duties.start_soon(self._hear_release_requests)
                duties.start_soon(self._renew_held_locks)
        finally:
            with anyio.move_on_after(self._call_bound, shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (a later call opens new ones)."""
        await self._redis.aclose()

    # --- taking and releasing ----------------------------------------------------------

    async def _take(
        self, upload_id: str, deadline: float, state: Acquisition, on_release_request: Callable[[], None]
    ) -> None:
        self._held[upload_id] = await self._acquire(upload_id, deadline, state, on_release_request)

    async def _let_go(self, upload_id: str) -> None:
        await self._release(upload_id, self._held.pop(upload_id))

    async def _acquire(
        self, upload_id: str, deadline: float, state: Acquisition, on_release_request: Callable[[], None]
    ) -> _Held:
        key = self.lock_key(upload_id)
        token = secrets.token_hex(16)
        next_request = anyio.current_time()
        while True:
            sent_at = anyio.current_time()
            holder = await self._call(self._set_if_free(key, token))
            if holder == token:
                return _Held(token, on_release_request, sent_at)
            if state.interrupt and holder is not None and sent_at >= next_request:
                await self._call(self._redis.publish(self.channel, f"{holder} {upload_id}"))
                next_request = sent_at + self.request_interval
            if time.monotonic() >= deadline:  # SharedLocker.hold's clock
                raise lock_timeout()
            await anyio.sleep(self.acquirer_poll)

    async def _set_if_free(self, key: str, token: str) -> str | None:
        """SET NX; the holder's token afterwards."""
        try:
            return await self._acquire_script(keys=[key], args=[token, self._ttl_ms])
        except BaseException:
            # The SET may have landed before the failure (a lost reply, a cancelled
            # request): don't leave a lock that nobody renews or releases.
            with anyio.move_on_after(self._call_bound, shield=True):
                try:
                    await self._release_script(keys=[key], args=[token])
                except _FAILURES:
                    pass  # Redis is gone: the key expires by itself
            raise

    async def _release(self, upload_id: str, held: _Held) -> None:
        # Shielded: a cancelled request must still let go, or the next one waits for the TTL.
        with anyio.move_on_after(self._call_bound, shield=True):
            try:
                released = await self._release_script(keys=[self.lock_key(upload_id)], args=[held.token])
            except _FAILURES as error:
                log.warning(
                    "redis locker: could not release the lock of upload %s (it expires within %g s): %s",
                    upload_id,
                    self.ttl,
                    error,
                )
                return
            if not released and not held.lost:
                log.warning("redis locker: the lock of upload %s had expired before its release", upload_id)

    async def _call(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except _FAILURES as error:
            log.warning("redis locker: Redis is unavailable: %s", error)
            raise locker_unavailable() from error

    # --- background duties (run) -------------------------------------------------------

    async def _hear_release_requests(self) -> None:
        backoff = _FIRST_BACKOFF
        failing = False
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                if failing:
                    log.info("redis locker: hearing release requests again")
                failing, backoff = False, _FIRST_BACKOFF
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_LISTEN_POLL)
                    if message is not None and message["type"] == "message":
                        self._pass_release_request(message["data"])
            except _FAILURES as error:
                if not failing:  # once per outage, not once per attempt
                    log.warning("redis locker: lost the release-request channel, reconnecting: %s", error)
                failing = True
            except Exception:  # e.g. an undecodable message: a background duty must not stop the app
                log.exception("redis locker: release-request listener failed, restarting it")
                failing = True
            finally:
                with anyio.move_on_after(self._call_bound, shield=True):
                    await pubsub.aclose()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _pass_release_request(self, message: str) -> None:
        token, _, upload_id = message.partition(" ")
        held = self._held.get(upload_id)
        if held is not None and held.token == token:
            held.on_release_request()

    async def _renew_held_locks(self) -> None:
        while True:
            await anyio.sleep(self.ttl / 3)
            try:
                await self._renew()
            except Exception:  # Redis failures are handled inside; anything else must not stop the app
                log.exception("redis locker: renewing locks failed")

    async def _renew(self) -> None:
        held = [(upload_id, h) for upload_id, h in self._held.items() if not h.lost]
        if not held:
            return
        sent_at = anyio.current_time()
        try:
            kept: list[int | None] = await self._renew_script(
                keys=[self.lock_key(upload_id) for upload_id, _ in held],
                args=[self._ttl_ms, *(h.token for _, h in held)],
            )
        except _FAILURES as error:
            log.warning("redis locker: could not renew %d lock(s): %s", len(held), error)
            kept = [None] * len(held)
        now = anyio.current_time()
        for (upload_id, h), still_ours in zip(held, kept, strict=True):
            if self._held.get(upload_id) is not h:
                continue  # released meanwhile
            if still_ours == 1:
                h.confirmed_at = sent_at
            elif still_ours == 0:
                self._lose(upload_id, h, "it expired or another holder took it")
            elif now + self.ttl / 3 >= h.confirmed_at + self.ttl:
                # Unconfirmed, it may expire before the next renewal and another instance take it.
                self._lose(upload_id, h, "Redis could not renew it in time")

    def _lose(self, upload_id: str, held: _Held, why: str) -> None:
        held.lost = True
        log.warning("redis locker: lost the lock of upload %s (%s), stopping its request", upload_id, why)
        held.on_release_request()
