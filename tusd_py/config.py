"""One typed configuration; field names are tusd's flag names with '_' for '-'."""

from __future__ import annotations

from dataclasses import dataclass

# Passed to every worker's HTTP protocol through the environment (http_protocol.py).
HEADER_TIMEOUT_VARIABLE = "TUSD_PY_HEADER_TIMEOUT"
MAX_HEADER_SIZE_VARIABLE = "TUSD_PY_MAX_HEADER_SIZE"


def normalize_base_path(path: str) -> str:
    return "/" + path.strip("/") + "/" if path.strip("/") else "/"


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    base_path: str = "/files/"
    upload_dir: str = "./data"
    max_size: int = 0  # bytes; 0 = unlimited
    # Bounds on what one request may ask of the server (hostile or broken clients).
    max_metadata_size: int = 16 * 1024
    max_concat_partials: int = 1000
    max_header_size: int = 64 * 1024
    disable_download: bool = False
    # The IETF resumable-upload draft beside tus 1.0 (requests with Upload-Draft-Interop-Version).
    enable_experimental_protocol: bool = True
    disable_termination: bool = False
    disable_concatenation: bool = False
    # Unfinished uploads expire this long after their last stored byte; 0 disables expiration.
    expiration: float = 7 * 24 * 3600.0
    expiration_sweep_interval: float = 60.0
    network_timeout: float = 60.0
    acquire_lock_timeout: float = 20.0
    shutdown_timeout: float = 10.0
    workers: int = 1
    disable_cors: bool = False
    cors_allow_origin: str = ".*"
    cors_allow_credentials: bool = False
    cors_allow_methods: str = ""
    cors_allow_headers: str = ""
    cors_expose_headers: str = ""
    cors_max_age: str = "86400"
    behind_proxy: bool = False
    unix_sock: str = ""
    tls_certificate: str = ""
    tls_key: str = ""
    # S3-compatible object storage instead of -upload-dir (stores/s3.py).
    s3_bucket: str = ""
    s3_endpoint: str = ""
    s3_object_prefix: str = ""
    s3_part_size: int = 50 * 1024 * 1024
    s3_min_part_size: int = 5 * 1024 * 1024
    s3_max_buffered_parts: int = 20
    s3_concurrent_part_uploads: int = 10
    s3_disable_content_hashes: bool = False  # accepted for tusd; hashes are only sent where S3 requires them
    s3_disable_ssl: bool = False
    # Upload locks shared by every instance (lockers/redis.py); without it, locks are per host.
    redis_url: str = ""
    redis_lock_ttl: float = 10.0  # a dead instance's locks free this long after its last renewal
    # Promise that no other instance serves the same bucket: workers may share host-local locks.
    single_instance: bool = False
    dir_perms: int = 0o775
    file_perms: int = 0o664
    hooks_dir: str = ""
    hooks_http: str = ""
    hooks_http_forward_headers: str = ""
    hooks_http_retry: int = 3
    hooks_http_backoff: float = 1.0
    hooks_http_timeout: float = 15.0
    hooks_http_size_limit: int = 5120
    hooks_enabled_events: str = "pre-create,post-create,post-receive,post-terminate,post-finish"
    progress_hooks_interval: float = 1.0
    expose_metrics: bool = True
    metrics_path: str = "/metrics"
    show_greeting: bool = True
    verbose: bool = True
    log_format: str = "text"

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_path", normalize_base_path(self.base_path))

    @property
    def s3_endpoint_url(self) -> str:
        """tusd takes an endpoint with or without a scheme (then https, or http with -s3-disable-ssl)."""
        if not self.s3_endpoint or "://" in self.s3_endpoint:
            return self.s3_endpoint
        return ("http://" if self.s3_disable_ssl else "https://") + self.s3_endpoint
