"""create_app(Config) -> the ASGI application."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from . import log_format, process_tuning
from .asgi import Routes, TusApp
from .config import Config
from .cors import CorsPolicy
from .events import Events
from .expiry import run_sweeper
from .handler import TusHandler
from .hooks import HOOK_TYPES, FileHooks, HookBackend, Hooks, HttpHooks
from .lockers import FileLocker, Locker, MemoryLocker
from .metrics import Metrics
from .shutdown import on_shutdown_signal
from .stores import DataStore, FileStore

if TYPE_CHECKING:
    from .stores.s3 import S3Settings

GREETING = """Welcome to tusd-py

This is a tus resumable-upload server (https://tus.io). Uploads are created at {base_path}
"""


def enabled_hooks(config: Config) -> tuple[str, ...]:
    """`-hooks-enabled-events`: a comma-separated list; empty means every hook (tusd)."""
    names = tuple(name.strip() for name in config.hooks_enabled_events.split(",") if name.strip())
    unknown = [name for name in names if name not in HOOK_TYPES]
    if unknown:
        raise ValueError(f"unknown hook events: {', '.join(unknown)} (known: {', '.join(HOOK_TYPES)})")
    return names or HOOK_TYPES


def hook_backend(config: Config) -> HookBackend | None:
    # One transport at a time, the directory first, as in tusd.
    if config.hooks_dir:
        return FileHooks(config.hooks_dir)
    if config.hooks_http:
        forward = tuple(name.strip() for name in config.hooks_http_forward_headers.split(",") if name.strip())
        return HttpHooks(
            config.hooks_http,
            retries=config.hooks_http_retry,
            backoff=config.hooks_http_backoff,
            timeout=config.hooks_http_timeout,
            size_limit=config.hooks_http_size_limit,
            forward_headers=forward,
        )
    return None


def s3_settings(config: Config) -> S3Settings:
    from .stores.s3 import S3Settings

    return S3Settings(
        bucket=config.s3_bucket,
        endpoint=config.s3_endpoint_url,
        object_prefix=config.s3_object_prefix,
        part_size=config.s3_part_size,
        min_part_size=config.s3_min_part_size,
        max_buffered_parts=config.s3_max_buffered_parts,
        concurrent_part_uploads=config.s3_concurrent_part_uploads,
    )


def cors_policy(config: Config) -> CorsPolicy:
    return CorsPolicy(
        allow_origin=config.cors_allow_origin,
        allow_credentials=config.cors_allow_credentials,
        allow_methods=config.cors_allow_methods,
        allow_headers=config.cors_allow_headers,
        expose_headers=config.cors_expose_headers,
        max_age=config.cors_max_age,
    )


def build_store(config: Config) -> DataStore:
    if config.s3_bucket:
        from .stores.s3 import S3Store  # boto3 is imported only when S3 is used

        return S3Store(s3_settings(config))
    return FileStore(config.upload_dir, file_perms=config.file_perms, dir_perms=config.dir_perms)


def build_locker(config: Config) -> Locker:
    if config.redis_url:
        from .lockers.redis import RedisLocker  # redis-py only when Redis is used

        return RedisLocker(config.redis_url, config.acquire_lock_timeout, ttl=config.redis_lock_ttl)
    if config.s3_bucket and config.workers <= 1:
        return MemoryLocker(config.acquire_lock_timeout)  # one process, nothing on local disk
    # File locks: correct with several worker processes on one directory.
    return FileLocker(config.upload_dir, config.acquire_lock_timeout)


def check_backends(config: Config) -> str:
    """Fail at start-up, with a clear reason, if storage or Redis is unusable; returns where uploads go."""
    if config.redis_url:
        import redis

        client = redis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.RedisError as error:
            raise RuntimeError(f"cannot reach Redis at {config.redis_url}: {error}") from None
        finally:
            client.close()
    if not config.s3_bucket or (config.workers > 1 and not config.redis_url):
        upload_dir = Path(config.upload_dir).absolute()  # uploads, or the host's lock files
        try:
            upload_dir.mkdir(mode=config.dir_perms, parents=True, exist_ok=True)
        except OSError as error:
            raise RuntimeError(f"cannot use upload directory {upload_dir}: {error}") from None
        if not config.s3_bucket:
            return str(upload_dir)
    from .stores.s3 import check_bucket

    settings = s3_settings(config)
    check_bucket(settings)
    return f"s3://{settings.bucket}/{settings.object_prefix}"


def create_app(config: Config, store: DataStore | None = None, locker: Locker | None = None) -> TusApp:
    store = store if store is not None else build_store(config)
    locker = locker if locker is not None else build_locker(config)
    metrics = Metrics()
    hooks = Hooks(hook_backend(config), enabled_hooks(config), observer=metrics.hook_called)
    handler = TusHandler(config, store, locker, Events(hooks, metrics))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        with on_shutdown_signal(handler.shutdown):
            async with anyio.create_task_group() as background:
                background.start_soon(locker.run)
                background.start_soon(hooks.serve)
                if config.expiration > 0:
                    background.start_soon(
                        run_sweeper, store, locker, config.expiration, config.expiration_sweep_interval
                    )
                yield
                background.cancel_scope.cancel()

    async def greeting(request: Request) -> Response:
        return PlainTextResponse(GREETING.format(base_path=config.base_path))

    at_once = handler.at_once
    routes = Routes(
        config.base_path,
        handler.collection,
        handler.upload,
        at_once.head if at_once is not None else None,
        at_once.create if at_once is not None else None,
    )
    if config.expose_metrics:
        routes.add_page(config.metrics_path, metrics.endpoint)
    if config.show_greeting and config.base_path != "/":
        routes.add_page("/", greeting)
    return TusApp(routes, None if config.disable_cors else cors_policy(config), lifespan)


CONFIG_ENVIRONMENT_VARIABLE = "TUSD_PY_CONFIG"


def app_from_environment() -> TusApp:
    """App factory for worker processes: the CLI passes its Config as JSON."""
    process_tuning.tune()  # a spawned worker is a fresh process
    config = Config(**json.loads(os.environ[CONFIG_ENVIRONMENT_VARIABLE]))
    # A spawned worker starts with Python's default logging (WARNING, no formatter):
    # configure it as the CLI configured the supervisor, or its request log is lost.
    log_format.configure(config.log_format, config.verbose)
    return create_app(config)
