"""The command line, run as real processes: `python -m tusd_py` and the installed `tusd-py` script."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, free_port, stop_process

RUN_TIMEOUT = 30.0
START_TIMEOUT = 15.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def console_script() -> str:
    """The `tusd-py` entry point of the environment running the tests."""
    beside = Path(sys.executable).parent / "tusd-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("tusd-py")
    assert found, "the tusd-py console script is not installed"
    return found


@contextmanager
def running(command: list[str], log_path: Path, cwd: Path | None = None) -> Iterator[str]:
    """Start `command`, yield the URL from its `serving at` line, and always stop it."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=cwd, env=ENV, bufsize=0)
    assert process.stdout is not None
    try:
        url = None
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while url is None and selector.select(timeout=max(0.0, deadline - time.monotonic())):
                line = process.stdout.readline().decode()
                if not line:
                    break
                if "serving at " in line:
                    assert line.startswith("tusd-py: serving at "), line
                    url = line.split("serving at ", 1)[1].strip()
        assert url is not None, f"no 'serving at' line from {command}\n{log_path.read_text(errors='replace')}"
        yield url
    finally:
        stop_process(process)
        process.stdout.close()


def assert_tus_options(client: httpx.Client, url: str) -> httpx.Response:
    response = client.options(url)
    assert response.status_code == 200, response.text
    assert response.headers["tus-version"] == "1.0.0"  # T-CORE-24
    assert response.headers["tus-resumable"] == "1.0.0"
    return response


# --- errors and help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["-nonsense"], ["--nonsense=1"], ["-port", "1080", "-nonsense"]])
def test_unknown_flag_exits_2_with_gos_message(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "tusd_py", *argv], capture_output=True, timeout=RUN_TIMEOUT, env=ENV)
    assert result.returncode == 2
    assert b"flag provided but not defined: -nonsense" in result.stderr
    assert b"serving at" not in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-port"], b"flag needs an argument: -port"),
        (["-port", "abc"], b"invalid value 'abc' for flag -port"),
        (["stray"], b"unexpected argument 'stray'"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: bytes) -> None:
    result = subprocess.run([sys.executable, "-m", "tusd_py", *argv], capture_output=True, timeout=RUN_TIMEOUT, env=ENV)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("flag", ["-help", "--help", "-h"])
def test_help_exits_0_with_usage(flag: str) -> None:
    result = subprocess.run([console_script(), flag], capture_output=True, timeout=RUN_TIMEOUT, env=ENV)
    assert result.returncode == 0
    usage = result.stdout + result.stderr
    assert b"Usage of tusd-py" in usage
    for name in (b"-port", b"-host", b"-upload-dir", b"-base-path", b"-max-size"):
        assert name in usage


def test_port_in_use_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run(
            [console_script(), "-host", "127.0.0.1", "-port", str(port), "-upload-dir", str(tmp_path / "u")],
            capture_output=True,
            timeout=RUN_TIMEOUT,
            env=ENV,
        )
    assert result.returncode != 0
    assert b"cannot listen" in result.stderr


# --- serving -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["-port {}", "-port={}", "--port={}"])
def test_console_script_serves_at_files_on_the_given_port(form: str, tmp_path: Path, client: httpx.Client) -> None:
    port = free_port()
    port_args = form.format(port).split()
    command = [console_script(), "-host", "127.0.0.1", *port_args, "-upload-dir", str(tmp_path / "uploads")]
    with running(command, tmp_path / "server.log") as url:
        assert url == f"http://127.0.0.1:{port}/files/"
        response = assert_tus_options(client, url)
        assert "creation" in response.headers["tus-extension"].split(",")
        assert "tus-max-size" not in response.headers  # T-CORE-7: only with -max-size > 0
    assert (tmp_path / "uploads").is_dir()


def test_upload_dir_named_help_is_a_directory_not_a_help_request(tmp_path: Path, client: httpx.Client) -> None:
    # `-h`/`-help` are flags; the *value* "help" of -upload-dir is a directory name.
    command = [console_script(), "-host", "127.0.0.1", "-port", "0", "-upload-dir", "help"]
    with running(command, tmp_path / "server.log", cwd=tmp_path) as url:
        assert_tus_options(client, url)
    assert (tmp_path / "help").is_dir()


@pytest.mark.parametrize("base_path", ["/uploads/", "uploads", "/uploads"])
def test_base_path_moves_the_creation_url(base_path: str, make_server, client: httpx.Client) -> None:
    server: TusServer = make_server("-base-path", base_path)
    assert server.url.endswith("/uploads/")
    assert_tus_options(client, server.url)
    response = client.post(server.url, headers={**TUS, "Upload-Length": "3"})
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(server.url)
    assert client.head(location, headers=TUS).headers["upload-offset"] == "0"
    old = client.post(server.url.replace("/uploads/", "/files/"), headers={**TUS, "Upload-Length": "3"})
    assert old.status_code in (404, 405)


def test_max_size_is_announced_and_enforced(make_server, client: httpx.Client) -> None:
    server: TusServer = make_server("-max-size", "100")
    response = assert_tus_options(client, server.url)
    assert response.headers["tus-max-size"] == "100"  # T-CORE-7
    at_limit = client.post(server.url, headers={**TUS, "Upload-Length": "100"})
    assert at_limit.status_code == 201, at_limit.text
    over = client.post(server.url, headers={**TUS, "Upload-Length": "101"})
    assert over.status_code == 413  # T-CRE-6
    assert over.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    assert "location" not in over.headers
