"""Prometheus metrics under tusd's exact names (drop-in for tusd dashboards).

tusd (cmd/tusd/cli/metrics.go, pkg/prometheuscollector, pkg/hooks) exposes at
`-metrics-path` (/metrics, on by default): tusd_requests_total{method},
tusd_errors_total{status,code}, tusd_bytes_received, tusd_uploads_created,
tusd_uploads_finished, tusd_uploads_terminated, tusd_connections_open,
tusd_hook_invocations_total{hooktype}, tusd_hook_errors_total{hooktype}.
Its request counters start at 0 for GET, HEAD, POST, PATCH, DELETE, OPTIONS and
its hook counters at 0 for the seven tusd hook types.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, patch, start_server
from prometheus_client.parser import text_string_to_metric_families
from worker_procs import serving_pid, worker_pids

TUSD_METRICS = (
    "tusd_requests_total",
    "tusd_errors_total",
    "tusd_bytes_received",
    "tusd_uploads_created",
    "tusd_uploads_finished",
    "tusd_uploads_terminated",
    "tusd_connections_open",
    "tusd_hook_invocations_total",
    "tusd_hook_errors_total",
)
TUSD_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")
TUSD_HOOKS = (
    "pre-create",
    "post-create",
    "post-receive",
    "pre-finish",
    "post-finish",
    "pre-terminate",
    "post-terminate",
)
TIMEOUT = 10.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(client: httpx.Client, url: str) -> tuple[httpx.Response, Samples]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response, parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def declared_types(text: str) -> dict[str, str]:
    """`# TYPE <name> <type>` lines, by name."""
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
    return types


def metrics_url(server: TusServer, path: str = "/metrics") -> str:
    return server.origin + path


@pytest.fixture
def fresh(make_server) -> TusServer:
    """A server of its own, so counts start at zero."""
    return make_server()


# --- exposition ----------------------------------------------------------------------------------


def test_metrics_is_prometheus_text_with_every_tusd_metric_name(fresh: TusServer, client: httpx.Client) -> None:
    response, _ = scrape(client, metrics_url(fresh))
    assert response.headers["content-type"].startswith("text/plain")
    types = declared_types(response.text)
    for name in TUSD_METRICS:
        assert name in types, f"{name} missing from /metrics"
    for name in ("tusd_requests_total", "tusd_errors_total", "tusd_hook_invocations_total", "tusd_hook_errors_total"):
        assert types[name] == "counter"
    assert types["tusd_connections_open"] == "gauge"


def test_fresh_server_exposes_tusds_zero_valued_series(fresh: TusServer, client: httpx.Client) -> None:
    # tusd pre-creates tusd_requests_total for six methods and both hook counters
    # for its seven hook types (hooks.SetupHookMetrics), so queries see 0, not "no data".
    _, samples = scrape(client, metrics_url(fresh))
    for name in ("tusd_bytes_received", "tusd_uploads_created", "tusd_uploads_finished", "tusd_uploads_terminated"):
        assert (name, frozenset()) in samples, name
    for method in TUSD_METHODS:
        assert ("tusd_requests_total", frozenset({("method", method)})) in samples, method
    for hook in TUSD_HOOKS:
        for name in ("tusd_hook_invocations_total", "tusd_hook_errors_total"):
            assert (name, frozenset({("hooktype", hook)})) in samples, (name, hook)


def test_only_tusds_series_are_exposed(fresh: TusServer, client: httpx.Client) -> None:
    # tusd has no `*_created` timestamp series (prometheus-client adds them to
    # counters unless disabled); `tusd_requests_created` would even look like a tusd count.
    create(client, fresh, 1)
    _, samples = scrape(client, metrics_url(fresh))
    extra = sorted({name for name, _ in samples if name.startswith("tusd_") and name not in TUSD_METRICS})
    assert extra == []


# --- counts ---------------------------------------------------------------------------------------


def test_counts_after_a_known_sequence(fresh: TusServer, client: httpx.Client) -> None:
    url_a = create(client, fresh, 5)
    url_b = create(client, fresh, 8)
    sent = 0
    assert patch(client, url_a, 0, b"hello").status_code == 204  # finishes A
    sent += 5
    assert patch(client, url_b, 0, b"abc").status_code == 204
    sent += 3
    wrong = patch(client, url_b, 1, b"x")  # wrong offset: nothing stored
    assert wrong.status_code == 409
    assert client.delete(url_b, headers=TUS).status_code == 204
    assert client.head(url_b, headers=TUS).status_code == 404

    _, samples = scrape(client, metrics_url(fresh))
    assert value(samples, "tusd_uploads_created") == 2
    assert value(samples, "tusd_uploads_finished") == 1
    assert value(samples, "tusd_uploads_terminated") == 1
    assert value(samples, "tusd_bytes_received") == sent
    assert value(samples, "tusd_requests_total", method="POST") == 2
    assert value(samples, "tusd_requests_total", method="PATCH") == 3
    assert value(samples, "tusd_requests_total", method="DELETE") == 1
    assert value(samples, "tusd_requests_total", method="HEAD") == 1
    assert value(samples, "tusd_errors_total", status="409", code="ERR_MISMATCHED_OFFSET") == 1
    assert value(samples, "tusd_errors_total", status="404", code="ERR_UPLOAD_NOT_FOUND") == 1
    assert value(samples, "tusd_connections_open") == 0  # no tus request is running


def test_creation_with_upload_counts_received_bytes(fresh: TusServer, client: httpx.Client) -> None:
    headers = {**TUS, "Upload-Length": "10", "Content-Type": "application/offset+octet-stream"}
    response = client.post(fresh.url, content=b"0123456", headers=headers)
    assert response.status_code == 201
    _, samples = scrape(client, metrics_url(fresh))
    assert value(samples, "tusd_bytes_received") == 7
    assert value(samples, "tusd_uploads_created") == 1
    assert value(samples, "tusd_uploads_finished") == 0


def test_counts_only_move_forward_between_scrapes(fresh: TusServer, client: httpx.Client) -> None:
    _, before = scrape(client, metrics_url(fresh))
    url = create(client, fresh, 3)
    assert patch(client, url, 0, b"abc").status_code == 204
    _, after = scrape(client, metrics_url(fresh))
    for name in ("tusd_uploads_created", "tusd_uploads_finished"):
        assert value(after, name) == value(before, name) + 1
    assert value(after, "tusd_bytes_received") == value(before, "tusd_bytes_received") + 3


# --- flags ----------------------------------------------------------------------------------------


def test_expose_metrics_false_removes_the_endpoint(make_server, client: httpx.Client) -> None:
    server = make_server("-expose-metrics=false")
    response = client.get(metrics_url(server))
    assert response.status_code in (404, 405)
    assert "tusd_" not in response.text


def test_metrics_path_moves_the_endpoint(make_server, client: httpx.Client) -> None:
    server = make_server("-metrics-path", "/m")
    _, samples = scrape(client, metrics_url(server, "/m"))
    assert ("tusd_uploads_created", frozenset()) in samples
    assert client.get(metrics_url(server)).status_code in (404, 405)


# --- several workers ------------------------------------------------------------------------------


def request_on_new_connection(
    server: TusServer, pids: list[int], method: str, path: str, headers: dict[str, str]
) -> tuple[int, int, bytes]:
    """(serving worker, status, body) of one request on a fresh connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Content-Length: 0"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the response head"
            data += chunk
        head_bytes, body = data.split(b"\r\n\r\n", 1)
        status = int(head_bytes.split(b" ", 2)[1])
        headers = dict(line.split(b":", 1) for line in head_bytes.split(b"\r\n")[1:])
        length = int(next((v for k, v in headers.items() if k.lower() == b"content-length"), b"0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            body += chunk
        pid = serving_pid(server, sock, pids)  # the connection is still open here
    return pid, status, body


@pytest.fixture
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TusServer, list[int]]]:
    server = start_server(tmp_path_factory.mktemp("metrics-workers") / "uploads", "-workers", "2")
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(pids := worker_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pids) == 2, f"workers: {pids}"
        yield server, pids
    finally:
        server.stop()


def test_counts_are_summed_over_workers(two_workers: tuple[TusServer, list[int]]) -> None:
    server, pids = two_workers
    created = {pid: 0 for pid in pids}
    path = urlsplit(server.url).path
    deadline = time.monotonic() + 4 * TIMEOUT
    # At least 20 creates, each on a fresh connection, until both workers made some (the kernel picks).
    while (sum(created.values()) < 20 or min(created.values()) < 3) and time.monotonic() < deadline:
        pid, status, _ = request_on_new_connection(server, pids, "POST", path, {**TUS, "Upload-Length": "1"})
        assert status == 201
        assert pid in created
        created[pid] += 1
    assert min(created.values()) >= 3, f"creates per worker: {created}"
    total = sum(created.values())

    # Every scrape, whichever worker answers it, shows the sum of all workers.
    answered_by = set()
    for scrapes in range(1, 41):
        pid, status, body = request_on_new_connection(server, pids, "GET", "/metrics", {})
        assert status == 200
        answered_by.add(pid)
        samples = parse(body.decode())
        assert value(samples, "tusd_uploads_created") == total, f"scrape by worker {pid}"
        assert value(samples, "tusd_requests_total", method="POST") == total
        if answered_by == set(pids) and scrapes >= 6:
            break
    assert answered_by == set(pids), f"only {answered_by} answered /metrics"
