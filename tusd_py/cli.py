"""`tusd-py`: tusd's flags -> Config -> uvicorn on a socket we bind ourselves
(so `-port 0` works and the printed URL is the real one)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from . import __version__, log_format, process_tuning
from .config import HEADER_TIMEOUT_VARIABLE, MAX_HEADER_SIZE_VARIABLE, Config
from .flags import (
    Flag,
    FlagError,
    HelpRequested,
    parse_bool,
    parse_duration,
    parse_flags,
    parse_octal,
    parse_regex,
    usage,
)

FLAGS = (
    # Listening
    Flag("host", str, "host to bind the HTTP server to"),
    Flag("port", int, "port to bind the HTTP server to (0 picks a free one)"),
    Flag("unix-sock", str, "listen on this UNIX socket instead of TCP (a stale socket file is removed)"),
    Flag("base-path", str, "basepath of the HTTP server"),
    Flag("behind-proxy", parse_bool, "respect X-Forwarded-* and Forwarded headers"),
    Flag("workers", int, "number of worker processes sharing the port"),
    Flag("tls-certificate", str, "path to the TLS certificate (with its chain)"),
    Flag("tls-key", str, "path to the TLS private key"),
    # Protocol
    Flag("max-size", int, "maximum size of a single upload in bytes (0 = unlimited)"),
    Flag("max-metadata-size", int, "largest Upload-Metadata header in bytes"),
    Flag("max-concat-partials", int, "most partial uploads one final upload may list"),
    Flag("max-header-size", int, "largest total size of a request's headers in bytes"),
    Flag("disable-download", parse_bool, "disable downloading uploads with GET"),
    Flag("enable-experimental-protocol", parse_bool, "accept the IETF resumable-upload draft (default on)"),
    Flag("disable-termination", parse_bool, "disable the termination extension"),
    Flag("disable-concatenation", parse_bool, "disable the concatenation extension"),
    Flag("expiration", parse_duration, "unfinished uploads expire this long after their last byte (0 disables)"),
    Flag("expiration-sweep-interval", parse_duration, "how often expired uploads are removed"),
    # CORS
    Flag("disable-cors", parse_bool, "disable CORS headers"),
    Flag("cors-allow-origin", parse_regex, "regular expression of allowed origins (whole origin must match)"),
    Flag("cors-allow-credentials", parse_bool, "allow credentials in cross-origin requests"),
    Flag("cors-allow-methods", str, "comma-separated methods to allow besides the defaults"),
    Flag("cors-allow-headers", str, "comma-separated request headers to allow besides the defaults"),
    Flag("cors-expose-headers", str, "comma-separated response headers to expose besides the defaults"),
    Flag("cors-max-age", str, "seconds browsers may cache a preflight answer"),
    # File storage
    Flag("upload-dir", str, "directory to store uploads in"),
    Flag("dir-perms", parse_octal, "permissions of created directories (octal)"),
    Flag("file-perms", parse_octal, "permissions of created files (octal)"),
    # S3 storage and shared locks (several instances)
    Flag("s3-bucket", str, "store uploads in this S3 bucket instead of -upload-dir"),
    Flag("s3-endpoint", str, "S3-compatible endpoint (MinIO, Ceph, R2...); default: AWS"),
    Flag("s3-object-prefix", str, "prefix of every object key"),
    Flag("s3-part-size", int, "preferred size of S3 parts in bytes"),
    Flag("s3-min-part-size", int, "smallest S3 part in bytes (S3's own minimum is 5 MiB)"),
    Flag("s3-max-buffered-parts", int, "parts of one upload waiting in temporary files for their upload"),
    Flag("s3-concurrent-part-uploads", int, "part uploads running at once"),
    Flag("s3-disable-content-hashes", parse_bool, "accepted for tusd; hashes are only sent where S3 requires them"),
    Flag("s3-disable-ssl", parse_bool, "use http:// for an -s3-endpoint given without a scheme"),
    Flag("redis-url", str, "share upload locks through Redis (redis://host:port/db), for several instances"),
    Flag("redis-lock-ttl", parse_duration, "how long a lock outlives an instance that died holding it"),
    Flag("single-instance", parse_bool, "no other instance serves the same bucket (lets -workers share host locks)"),
    # Hooks
    Flag("hooks-dir", str, "directory of hook executables, named after the event"),
    Flag("hooks-http", str, "URL to POST hook events to"),
    Flag("hooks-http-forward-headers", str, "comma-separated client headers to forward to the HTTP hook"),
    Flag("hooks-http-retry", int, "retries of a failed HTTP hook (5xx or network error)"),
    Flag("hooks-http-backoff", parse_duration, "wait between HTTP hook retries"),
    Flag("hooks-http-timeout", parse_duration, "timeout of one HTTP hook request"),
    Flag("hooks-http-size-limit", int, "largest HTTP hook response in bytes"),
    Flag("hooks-enabled-events", str, "comma-separated hook events to run (empty: all, including pre-access)"),
    Flag("progress-hooks-interval", parse_duration, "interval of post-receive hooks while a body streams"),
    # Monitoring and logs
    Flag("expose-metrics", parse_bool, "expose Prometheus metrics"),
    Flag("metrics-path", str, "path of the metrics endpoint"),
    Flag("show-greeting", parse_bool, "show the greeting message at /"),
    Flag("verbose", parse_bool, "log every request and upload event"),
    Flag("log-format", str, "log format: text or json"),
    Flag("version", parse_bool, "print the version and exit"),
    # Timeouts
    Flag("network-timeout", parse_duration, "timeout for reading the request body"),
    Flag("acquire-lock-timeout", parse_duration, "how long a request waits for an upload's lock"),
    Flag("shutdown-timeout", parse_duration, "how long to wait for running requests on SIGTERM"),
)

# tusd flags we refuse with a reason rather than silently ignore.
NOT_IMPLEMENTED = {
    **dict.fromkeys(["hooks-grpc", "hooks-grpc-retry", "hooks-grpc-backoff", "hooks-grpc-secure",
                     "hooks-grpc-server-tls-certificate", "hooks-grpc-client-tls-certificate",
                     "hooks-grpc-client-tls-key", "hooks-grpc-forward-headers"], "gRPC hooks"),
    "hooks-plugin": "Go plugin hooks",
    "hooks-http-skip-verify": "skipping TLS verification of hook endpoints",
    **dict.fromkeys(["gcs-bucket", "gcs-object-prefix", "gcs-endpoint"], "Google Cloud Storage"),
    **dict.fromkeys(["azure-storage", "azure-container-access-type", "azure-blob-access-tier",
                     "azure-object-prefix", "azure-endpoint"], "Azure Blob Storage"),
    "s3-transfer-acceleration": "S3 transfer acceleration",
    "s3-log-api-calls": "logging every S3 call",
    **dict.fromkeys(["expose-pprof", "pprof-path", "pprof-block-profile-rate", "pprof-mutex-profile-rate"],
                    "Go's pprof"),
    "enable-h2c": "HTTP/2 (uvicorn speaks HTTP/1.1)",
    "tls-mode": "choosing TLS versions",
    "request-completion-timeout": "a grace period after a request ends",
    "filelock-holder-poll-interval": "tuning file lock polls",
    "filelock-acquirer-poll-interval": "tuning file lock polls",
    "show-startup-logs": "hiding start-up logs",
}  # fmt: skip


class VersionRequested(Exception):
    """`-version` was given: print it and exit, like tusd."""


def config_from_args(argv: Sequence[str]) -> Config:
    values = parse_flags(FLAGS, argv, not_implemented=NOT_IMPLEMENTED)
    if values.pop("version", False):
        raise VersionRequested
    known = {field.name for field in fields(Config)}
    config = Config(
        **{name.replace("-", "_"): value for name, value in values.items() if name.replace("-", "_") in known}
    )
    if config.log_format not in ("text", "json"):
        raise FlagError(f"invalid value {config.log_format!r} for flag -log-format: use text or json")
    if bool(config.tls_certificate) != bool(config.tls_key):
        raise FlagError("-tls-certificate and -tls-key must be given together")
    if config.s3_bucket and config.workers > 1 and not (config.redis_url or config.single_instance):
        raise FlagError(
            "-s3-bucket with -workers needs shared locks: give -redis-url, or -single-instance "
            "if no other instance serves this bucket"
        )
    from .app import enabled_hooks  # deferred: importing the app pulls in the server stack

    try:
        enabled_hooks(config)
    except ValueError as error:
        raise FlagError(f"invalid value for flag -hooks-enabled-events: {error}") from None
    return config


def _bind(config: Config) -> socket.socket:
    if config.unix_sock:
        Path(config.unix_sock).unlink(missing_ok=True)  # a stale socket from an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(config.unix_sock)
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    from . import supervisor  # deferred: it imports uvicorn

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    address = (config.host, config.port)
    shared_port = config.workers > 1 and supervisor.shares_ports()
    if shared_port:
        supervisor.refuse_taken_port(family, address)
    return supervisor.bind(family, address, shared_port=shared_port)


def _endpoint(config: Config, sock: socket.socket) -> str:
    if config.unix_sock:
        return f"unix:{config.unix_sock}{config.base_path}"
    host = f"[{config.host}]" if ":" in config.host else config.host
    scheme = "https" if config.tls_certificate else "http"
    return f"{scheme}://{host}:{sock.getsockname()[1]}{config.base_path}"


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        config = config_from_args(args)
    except HelpRequested:
        print(usage("tusd-py", FLAGS))
        return 0
    except VersionRequested:
        print(f"tusd-py {__version__}")
        return 0
    except FlagError as error:
        print(f"tusd-py: {error}\n{usage('tusd-py', FLAGS)}", file=sys.stderr)
        return 2
    log_format.configure(config.log_format, config.verbose)
    process_tuning.tune()
    try:
        sock = _bind(config)
    except OSError as error:
        where = config.unix_sock or f"{config.host}:{config.port}"
        print(f"tusd-py: cannot listen on {where}: {error}", file=sys.stderr)
        return 1
    # Read by every worker's HTTP protocol (http_protocol.py): tusd's ReadHeaderTimeout.
    os.environ[HEADER_TIMEOUT_VARIABLE] = str(config.network_timeout)
    os.environ[MAX_HEADER_SIZE_VARIABLE] = str(config.max_header_size)
    from .app import check_backends  # deferred: importing the app pulls in the server stack

    try:
        where = check_backends(config)
    except Exception as error:  # unreachable bucket or Redis, unusable directory: say so and stop
        print(f"tusd-py: {error}", file=sys.stderr)
        return 1
    return _serve(config, sock, f"tusd-py: uploads in {where}\ntusd-py: serving at {_endpoint(config, sock)}")


def _protocol_options() -> dict[str, Any]:
    """httptools and uvloop when installed (30-60% faster here), else the pure-Python ones."""
    options: dict[str, Any] = {"http": "h11", "loop": "asyncio"}
    if importlib.util.find_spec("httptools") is not None:
        from .http_protocol import TimedHttpToolsProtocol

        options["http"] = TimedHttpToolsProtocol
    if importlib.util.find_spec("uvloop") is not None:
        options["loop"] = "uvloop"
    return options


def _remove_stale_metrics_dirs() -> None:
    """Metrics directories of supervisors that died without cleaning up (kill -9)."""
    for path in Path(tempfile.gettempdir()).glob("tusd-py-metrics-*-*"):
        pid = path.name.split("-")[3]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _serve(config: Config, sock: socket.socket, banner: str) -> int:
    """Run uvicorn; `banner` is printed once the app is built, so the URL it shows works."""
    import uvicorn

    options: dict[str, Any] = dict(
        **_protocol_options(),
        lifespan="on",
        ws="none",  # tus has no WebSockets: no protocol library loaded (~1 MiB resident)
        # Location is built from Host; forwarded headers count only with -behind-proxy.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,  # ours, from log_format.configure
        timeout_graceful_shutdown=config.shutdown_timeout,
        ssl_certfile=config.tls_certificate or None,
        ssl_keyfile=config.tls_key or None,
    )
    if config.workers <= 1:
        from .app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(config), **options))
        print(banner, flush=True)
        server.run(sockets=[sock])
        return 0
    # Workers build their own app from the same Config, passed through the environment,
    # and share metrics through files (prometheus-client's multiprocess mode).
    from .app import CONFIG_ENVIRONMENT_VARIABLE

    _remove_stale_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"tusd-py-metrics-{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[CONFIG_ENVIRONMENT_VARIABLE] = json.dumps(asdict(config))
    worker_config = uvicorn.Config("tusd_py.app:app_from_environment", factory=True, workers=config.workers, **options)
    print(banner, flush=True)
    try:
        from .supervisor import Supervisor, listeners

        Supervisor(worker_config, listeners(sock, config.workers)).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
