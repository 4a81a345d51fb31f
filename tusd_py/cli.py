"""`tusd-py`: tusd's flags -> Config -> uvicorn on a socket we bind ourselves
(so `-port 0` works and the printed URL is the real one)."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from .app import CONFIG_ENVIRONMENT_VARIABLE, create_app
from .config import Config
from .flags import Flag, FlagError, HelpRequested, parse_bool, parse_duration, parse_flags, parse_regex, usage

FLAGS = (
    Flag("host", str, "host to bind the HTTP server to"),
    Flag("port", int, "port to bind the HTTP server to (0 picks a free one)"),
    Flag("base-path", str, "basepath of the HTTP server"),
    Flag("upload-dir", str, "directory to store uploads in"),
    Flag("max-size", int, "maximum size of a single upload in bytes (0 = unlimited)"),
    Flag("disable-download", parse_bool, "disable downloading uploads with GET"),
    Flag("disable-termination", parse_bool, "disable the termination extension"),
    Flag("disable-concatenation", parse_bool, "disable the concatenation extension"),
    Flag("expiration", parse_duration, "unfinished uploads expire this long after their last byte (0 disables)"),
    Flag("expiration-sweep-interval", parse_duration, "how often expired uploads are removed"),
    Flag("network-timeout", parse_duration, "timeout for reading the request body"),
    Flag("acquire-lock-timeout", parse_duration, "how long a request waits for an upload's lock"),
    Flag("shutdown-timeout", parse_duration, "how long to wait for running requests on SIGTERM"),
    Flag("workers", int, "number of worker processes sharing the port"),
    Flag("disable-cors", parse_bool, "disable CORS headers"),
    Flag("cors-allow-origin", parse_regex, "regular expression of allowed origins (whole origin must match)"),
    Flag("cors-allow-credentials", parse_bool, "allow credentials in cross-origin requests"),
    Flag("cors-allow-methods", str, "comma-separated methods to allow besides the defaults"),
    Flag("cors-allow-headers", str, "comma-separated request headers to allow besides the defaults"),
    Flag("cors-expose-headers", str, "comma-separated response headers to expose besides the defaults"),
    Flag("cors-max-age", str, "seconds browsers may cache a preflight answer"),
    Flag("show-greeting", parse_bool, "show the greeting message at /"),
    Flag("verbose", parse_bool, "log more"),
)


def config_from_args(argv: Sequence[str]) -> Config:
    values = parse_flags(FLAGS, argv)
    known = {field.name for field in fields(Config)}
    return Config(
        **{name.replace("-", "_"): value for name, value in values.items() if name.replace("-", "_") in known}
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        config = config_from_args(args)
    except HelpRequested:
        print(usage("tusd-py", FLAGS))
        return 0
    except FlagError as error:
        print(f"tusd-py: {error}\n{usage('tusd-py', FLAGS)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if config.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sock = _bind(config.host, config.port)
    except OSError as error:
        print(f"tusd-py: cannot listen on {config.host}:{config.port}: {error}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"tusd-py: uploads in {Path(config.upload_dir).absolute()}", flush=True)
    print(f"tusd-py: serving at http://{host}:{port}{config.base_path}", flush=True)
    options: dict[str, Any] = dict(
        http="httptools",
        loop="uvloop",
        lifespan="on",
        # Location is built from Host; forwarded headers count only with -behind-proxy.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level="info" if config.verbose else "warning",
        timeout_graceful_shutdown=config.shutdown_timeout,
    )
    if config.workers <= 1:
        server = uvicorn.Server(uvicorn.Config(create_app(config), **options))
        server.run(sockets=[sock])
        return 0
    # Workers build their own app from the same Config, passed through the environment.
    os.environ[CONFIG_ENVIRONMENT_VARIABLE] = json.dumps(asdict(config))
    worker_config = uvicorn.Config("tusd_py.app:app_from_environment", factory=True, workers=config.workers, **options)
    Multiprocess(worker_config, sockets=[sock]).run()
    return 0
