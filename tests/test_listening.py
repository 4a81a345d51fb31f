"""Where and how the server listens, and the CLI's tusd compatibility.

`-unix-sock` (tusd removes a stale socket file first, cmd/tusd/cli/listener.go),
`-tls-certificate`/`-tls-key` (https, Location says https), `-version`,
`-help`, tusd flags we refuse with a reason, `-dir-perms`/`-file-perms`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch
from tusclient import client as tus_client

from tusd_py import __version__
from tusd_py.cli import FLAGS, NOT_IMPLEMENTED

RUN_TIMEOUT = 20.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

# Every flag of tusd's cmd/tusd/cli/flags.go.
TUSD_FLAGS = """
host port unix-sock base-path behind-proxy enable-h2c tls-certificate tls-key tls-mode
enable-experimental-protocol disable-download disable-termination disable-concatenation max-size
disable-cors cors-allow-origin cors-allow-credentials cors-allow-methods cors-allow-headers cors-max-age
cors-expose-headers upload-dir filelock-holder-poll-interval filelock-acquirer-poll-interval dir-perms
file-perms s3-bucket s3-object-prefix s3-endpoint s3-part-size s3-min-part-size s3-max-buffered-parts
s3-disable-content-hashes s3-disable-ssl s3-concurrent-part-uploads s3-transfer-acceleration
s3-log-api-calls gcs-bucket gcs-object-prefix gcs-endpoint azure-storage azure-container-access-type
azure-blob-access-tier azure-object-prefix azure-endpoint hooks-enabled-events progress-hooks-interval
hooks-dir hooks-http hooks-http-forward-headers hooks-http-retry hooks-http-backoff hooks-http-timeout
hooks-http-size-limit hooks-http-skip-verify hooks-grpc hooks-grpc-retry hooks-grpc-backoff
hooks-grpc-secure hooks-grpc-server-tls-certificate hooks-grpc-client-tls-certificate
hooks-grpc-client-tls-key hooks-grpc-forward-headers hooks-plugin expose-metrics metrics-path
expose-pprof pprof-path pprof-block-profile-rate pprof-mutex-profile-rate show-greeting version verbose
show-startup-logs log-format network-timeout shutdown-timeout acquire-lock-timeout
request-completion-timeout
""".split()


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tusd_py", *argv], capture_output=True, text=True, timeout=RUN_TIMEOUT, env=ENV
    )


# --- UNIX socket -----------------------------------------------------------------------------------


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # Short and fresh: a UNIX socket path must fit in 108 bytes, pytest's tmp_path may not.
    directory = tempfile.mkdtemp(prefix="tusd-sock-", dir="/tmp")
    try:
        yield Path(directory) / "tusd.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def uds_client(path: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://localhost", timeout=30.0)


def upload_over(client: httpx.Client, creation_url: str, data: bytes) -> str:
    response = client.post(creation_url, headers={**TUS, "Upload-Length": str(len(data))})
    assert response.status_code == 201, response.text
    url = response.headers["location"]
    half = len(data) // 2
    assert patch(client, url, 0, data[:half]).status_code == 204
    response = patch(client, url, half, data[half:])
    assert response.status_code == 204
    assert response.headers["upload-offset"] == str(len(data))
    return url


def test_unix_socket_serves_tus(make_server, socket_path: Path) -> None:
    server = make_server("-unix-sock", str(socket_path))
    assert server.url == f"unix:{socket_path}/files/"
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    with uds_client(socket_path) as client:
        assert client.options("/files/").headers["tus-version"] == "1.0.0"
        url = upload_over(client, "/files/", b"over a unix socket")
        assert url.startswith("http://localhost/files/")
        assert head(client, url).headers["upload-offset"] == "18"
        assert client.get(url).content == b"over a unix socket"
    assert (server.upload_dir / url.rsplit("/", 1)[1]).read_bytes() == b"over a unix socket"


def test_unix_socket_replaces_a_stale_socket_file(make_server, socket_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()  # the file stays behind, as after a crash
    assert socket_path.exists()
    make_server("-unix-sock", str(socket_path))
    with uds_client(socket_path) as client:
        response = client.post("/files/", headers={**TUS, "Upload-Length": "1"})
        assert response.status_code == 201


# --- TLS -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a test certificate (and the cryptography package is not installed)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=RUN_TIMEOUT,
    )
    return cert, key


@pytest.fixture
def tls_server(make_server, certificate: tuple[Path, Path]) -> TusServer:
    cert, key = certificate
    return make_server("-tls-certificate", str(cert), "-tls-key", str(key))


@pytest.fixture
def tls_client(certificate: tuple[Path, Path]) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    with httpx.Client(verify=context, timeout=30.0) as client:
        yield client


def test_tls_upload_with_httpx_and_https_location(tls_server: TusServer, tls_client: httpx.Client) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    url = upload_over(tls_client, tls_server.url, b"secret bytes")
    assert url.startswith(f"https://127.0.0.1:{tls_server.port}/files/")
    response = head(tls_client, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == "12"
    assert tls_client.get(url).content == b"secret bytes"


def test_tls_upload_with_tuspy(
    tls_server: TusServer, certificate: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tuspy's verify_tls_cert is a bool; requests then trusts REQUESTS_CA_BUNDLE.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    source = tmp_path / "file.bin"
    source.write_bytes(os.urandom(300_000))
    with open(source, "rb") as stream:
        uploader = tus_client.TusClient(tls_server.url).uploader(file_stream=stream, chunk_size=100_000)
        uploader.upload()
    assert uploader.url.startswith("https://")
    assert (tls_server.upload_dir / uploader.url.rsplit("/", 1)[1]).read_bytes() == source.read_bytes()


def test_tls_port_does_not_answer_plain_http(tls_server: TusServer) -> None:
    with httpx.Client(timeout=5.0) as plain:
        with pytest.raises(httpx.HTTPError):
            plain.options(tls_server.url.replace("https://", "http://"))


@pytest.mark.parametrize("flag", ["-tls-certificate", "-tls-key"])
def test_tls_certificate_and_key_go_together(flag: str, certificate: tuple[Path, Path]) -> None:
    result = run_cli(flag, str(certificate[0]))
    assert result.returncode == 2
    assert "-tls-certificate and -tls-key" in result.stderr


# --- -version, -help, refused tusd flags ------------------------------------------------------------


def test_version_prints_and_exits_0() -> None:
    result = run_cli("-version")
    assert result.returncode == 0
    assert __version__ in result.stdout
    assert "serving at" not in result.stdout


def test_help_lists_every_flag() -> None:
    result = run_cli("-help")
    assert result.returncode == 0
    usage = result.stdout + result.stderr
    for name in (
        "hooks-dir",
        "hooks-http",
        "hooks-enabled-events",
        "cors-allow-origin",
        "cors-max-age",
        "tls-certificate",
        "tls-key",
        "expose-metrics",
        "metrics-path",
        "behind-proxy",
        "unix-sock",
    ):
        assert f"-{name}" in usage, name
    for flag in FLAGS:
        assert f"  -{flag.name}" in usage, flag.name


@pytest.mark.parametrize(
    "argv",
    [
        ["-hooks-grpc", "x"],
        ["-s3-transfer-acceleration"],
        ["-gcs-bucket", "b"],
        ["-azure-storage", "a"],
        ["-expose-pprof"],
        ["-enable-h2c"],
        ["-tls-mode", "tls13"],
        ["-hooks-plugin=p"],
        ["--gcs-endpoint=http://gcs:4443"],
    ],
)
def test_unimplemented_tusd_flag_exits_2_with_a_reason(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2
    assert "does not implement" in result.stderr
    assert argv[0].lstrip("-").split("=")[0] in result.stderr
    assert "serving at" not in result.stdout


def test_every_tusd_flag_is_implemented_or_refused_with_a_reason() -> None:
    # Never "flag provided but not defined" for a tusd flag.
    ours = {flag.name for flag in FLAGS}
    assert [name for name in TUSD_FLAGS if name not in ours and name not in NOT_IMPLEMENTED] == []
    assert set(NOT_IMPLEMENTED) <= set(TUSD_FLAGS)


# --- permissions ---------------------------------------------------------------------------------------


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The server process inherits our umask: 0, so modes are exactly the flags'."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dir_and_file_perms_are_applied(make_server, tmp_path: Path, client: httpx.Client, umask_zero: None) -> None:
    upload_dir = tmp_path / "store" / "uploads"  # does not exist: the server creates it
    server = make_server(
        "-upload-dir", str(upload_dir), "-dir-perms", "750", "-file-perms", "640", upload_dir=tmp_path / "unused"
    )
    url = server.url
    assert client.options(url).status_code == 200  # the app (and its store) is up
    assert mode(upload_dir) == 0o750

    files = []
    response = client.post(url, headers={**TUS, "Upload-Length": "3"})
    plain = response.headers["location"].rsplit("/", 1)[1]
    assert patch(client, response.headers["location"], 0, b"abc").status_code == 204
    files += [plain, plain + ".info"]
    partial = client.post(url, headers={**TUS, "Upload-Length": "1", "Upload-Concat": "partial"}).headers["location"]
    assert patch(client, partial, 0, b"p").status_code == 204
    final = client.post(url, headers={**TUS, "Upload-Concat": f"final;{partial}"}).headers["location"]
    files += [partial.rsplit("/", 1)[1], final.rsplit("/", 1)[1], final.rsplit("/", 1)[1] + ".info"]
    deferred = client.post(url, headers={**TUS, "Upload-Defer-Length": "1"}).headers["location"]
    assert patch(client, deferred, 0, b"xy", **{"Upload-Length": "2"}).status_code == 204  # .info rewritten
    files += [deferred.rsplit("/", 1)[1] + ".info"]
    for name in files:
        assert mode(upload_dir / name) == 0o640, name


def test_default_perms_are_tusds(make_server, tmp_path: Path, client: httpx.Client, umask_zero: None) -> None:
    upload_dir = tmp_path / "fresh"
    server = make_server("-upload-dir", str(upload_dir), upload_dir=tmp_path / "unused")
    upload_id = create(client, server, 1).rsplit("/", 1)[1]
    assert mode(upload_dir) == 0o775
    assert mode(upload_dir / upload_id) == 0o664
    assert mode(upload_dir / (upload_id + ".info")) == 0o664
    assert json.loads((upload_dir / (upload_id + ".info")).read_text())["ID"] == upload_id
