"""HTTP hooks (`-hooks-http URL`), against a real receiver in the test.

The server POSTs tusd's payload (`{"Type", "Event": {"Upload", "HTTPRequest"}}`)
as `application/json`, forwarding the client headers named by
`-hooks-http-forward-headers`. The answer must be 2xx `application/json` of at
most `-hooks-http-size-limit` bytes within `-hooks-http-timeout`; 5xx answers
and network errors are retried `-hooks-http-retry` times, `-hooks-http-backoff`
apart. A blocking hook that still fails answers 500 ERR_HOOK_FAILED; a failing
post-* hook never fails the request.

One tusd-py server (every event enabled) and one receiver serve every test.
Each test marks its uploads with unique `test` metadata, so the receiver can
tell them apart and answer per test.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import TUS, TusServer, head, patch, start_server

RETRIES = 2
BACKOFF = 0.1
TIMEOUT = 0.5
SIZE_LIMIT = 1024
WAIT = 10.0  # bound on waiting for a background hook
UPLOAD_FIELDS = {"ID", "Size", "Offset", "MetaData", "IsPartial", "IsFinal", "PartialUploads", "Storage"}


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str | None = "application/json"
    delay: float = 0.0  # seconds before answering


@dataclass
class Call:
    path: str
    headers: Message
    payload: dict
    at: float  # time.monotonic() on arrival

    @property
    def hook(self) -> str:
        return self.payload["Type"]

    @property
    def upload(self) -> dict:
        return self.payload["Event"]["Upload"]


@dataclass
class Receiver:
    """A hook endpoint on 127.0.0.1: records every call and answers from per-test scripts."""

    calls: list[Call] = field(default_factory=list)
    # (test marker, hook type) -> answers, used in turn; the last one repeats.
    scripts: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                call = Call(self.path, self.headers, json.loads(raw), time.monotonic())
                answer = receiver.record(call)
                if answer.delay:
                    receiver.stopping.wait(answer.delay)  # the receiver being slow, not a test wait
                try:
                    self.send_response(answer.status)
                    if answer.content_type is not None:
                        self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the server gave up waiting (timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks"

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def record(self, call: Call) -> Answer:
        marker = call.upload["MetaData"].get("test", "")
        with self.lock:
            self.calls.append(call)
            answers = self.scripts.get((marker, call.hook))
            if not answers:
                return Answer()
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def script(self, marker: str, hook: str, *answers: Answer) -> None:
        with self.lock:
            self.scripts[(marker, hook)] = list(answers)

    def calls_for(self, marker: str, hook: str | None = None) -> list[Call]:
        with self.lock:
            return [
                c for c in self.calls if c.upload["MetaData"].get("test") == marker and (hook is None or c.hook == hook)
            ]

    def wait_for(self, marker: str, done: Callable[[list[Call]], bool]) -> list[Call]:
        deadline = time.monotonic() + WAIT
        while not done(calls := self.calls_for(marker)):
            assert time.monotonic() < deadline, f"hook calls did not arrive: {[c.hook for c in calls]}"
            time.sleep(0.02)  # polling, bounded by the deadline
        return calls


@dataclass
class Setup:
    server: TusServer
    receiver: Receiver


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    receiver = Receiver()
    receiver.start()
    try:
        srv = start_server(
            tmp_path_factory.mktemp("http-hooks") / "uploads",
            *("-hooks-http", receiver.url, "-hooks-enabled-events", ""),
            *("-hooks-http-retry", str(RETRIES), "-hooks-http-backoff", f"{int(BACKOFF * 1000)}ms"),
            *("-hooks-http-timeout", f"{int(TIMEOUT * 1000)}ms", "-hooks-http-size-limit", str(SIZE_LIMIT)),
            *("-hooks-http-forward-headers", "Authorization"),
        )
        try:
            yield Setup(srv, receiver)
        finally:
            srv.stop()
    finally:
        receiver.stop()


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex


def metadata_header(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def post(client: httpx.Client, srv: TusServer, marker: str, length: int = 5, **headers: str) -> httpx.Response:
    return client.post(
        srv.url,
        headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata_header({"test": marker}), **headers},
    )


def stored_names(srv: TusServer) -> set[str]:
    return {p.name for p in Path(srv.upload_dir).iterdir()}


def error_code(response: httpx.Response) -> str:
    return response.text.split(":", 1)[0]


def test_payload_and_content_type(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    created = post(client, srv, marker, 5, **{"X-Trace": "t-1"})
    assert created.status_code == 201
    url = created.headers["location"]
    upload_id = url.rsplit("/", 1)[1]
    assert patch(client, url, 0, b"hello").status_code == 204
    calls = receiver.wait_for(marker, lambda c: {"post-create", "post-receive", "post-finish"} <= {x.hook for x in c})
    assert {c.hook for c in calls} == {
        "pre-create",
        "post-create",
        "pre-access",
        "post-receive",
        "pre-finish",
        "post-finish",
    }
    for call in calls:
        assert call.path == "/hooks"
        assert call.headers.get_content_type() == "application/json"
        assert set(call.payload) == {"Type", "Event"}
        assert UPLOAD_FIELDS <= set(call.upload)
        assert call.upload["ID"] == upload_id or (call.hook == "pre-create" and call.upload["ID"] == "")
        assert (call.upload["Size"], call.upload["MetaData"]) == (5, {"test": marker})
        request = call.payload["Event"]["HTTPRequest"]
        assert set(request) >= {"Method", "URI", "RemoteAddr", "Header"}
        assert re.fullmatch(r"127\.0\.0\.1:\d+", request["RemoteAddr"])
        assert request["Header"]["Tus-Resumable"] == ["1.0.0"]
    (pre_create,) = [c for c in calls if c.hook == "pre-create"]
    request = pre_create.payload["Event"]["HTTPRequest"]
    assert (request["Method"], request["URI"]) == ("POST", "/files/")
    assert request["Header"]["X-Trace"] == ["t-1"]
    (finished,) = [c for c in calls if c.hook == "post-finish"]
    assert finished.upload["Offset"] == 5
    assert finished.payload["Event"]["HTTPRequest"]["Method"] == "PATCH"
    assert finished.payload["Event"]["HTTPRequest"]["URI"] == f"/files/{upload_id}"


def test_forward_headers_sends_only_the_named_client_headers(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    assert post(client, srv, marker, Authorization="Bearer secret", **{"X-Other": "no"}).status_code == 201
    (call,) = receiver.calls_for(marker, "pre-create")
    assert call.headers["Authorization"] == "Bearer secret"
    assert call.headers["X-Other"] is None
    # The payload carries every client header either way.
    header = call.payload["Event"]["HTTPRequest"]["Header"]
    assert header["Authorization"] == ["Bearer secret"] and header["X-Other"] == ["no"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/jsonl"])
def test_answer_that_is_not_application_json_fails_the_hook(
    setup: Setup, client: httpx.Client, marker: str, content_type: str | None
) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(body=b"{}", content_type=content_type))
    before = stored_names(srv)
    response = post(client, srv, marker)
    assert (response.status_code, error_code(response)) == (500, "ERR_HOOK_FAILED")
    assert stored_names(srv) == before
    assert len(receiver.calls_for(marker, "pre-create")) == 1  # a bad answer is not retried


def test_json_with_charset_is_application_json(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(content_type="application/json; charset=utf-8"))
    assert post(client, srv, marker).status_code == 201


def test_5xx_is_retried_with_backoff_then_fails(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(status=503, body=b"busy", content_type="text/plain"))
    before = stored_names(srv)
    response = post(client, srv, marker)
    assert (response.status_code, error_code(response)) == (500, "ERR_HOOK_FAILED")
    assert stored_names(srv) == before
    calls = receiver.calls_for(marker, "pre-create")
    assert len(calls) == 1 + RETRIES
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    assert all(BACKOFF * 0.9 <= gap < 0.9 for gap in gaps), gaps  # -hooks-http-backoff, not the 1 s default


def test_5xx_then_success_creates_the_upload(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(status=500), Answer(status=502), Answer())
    assert post(client, srv, marker).status_code == 201
    assert len(receiver.calls_for(marker, "pre-create")) == 3


def test_4xx_is_a_failure_without_retry(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(status=403, body=b'{"RejectUpload": false}'))
    response = post(client, srv, marker)
    assert (response.status_code, error_code(response)) == (500, "ERR_HOOK_FAILED")
    assert len(receiver.calls_for(marker, "pre-create")) == 1


def test_slow_receiver_times_out_and_fails(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(delay=TIMEOUT + 0.5))
    before = stored_names(srv)
    started = time.monotonic()
    response = post(client, srv, marker)
    elapsed = time.monotonic() - started
    assert (response.status_code, error_code(response)) == (500, "ERR_HOOK_FAILED")
    assert stored_names(srv) == before
    assert len(receiver.calls_for(marker, "pre-create")) == 1 + RETRIES  # a timeout is retried too
    assert elapsed < (1 + RETRIES) * (TIMEOUT + 0.5)  # each attempt gave up after -hooks-http-timeout


def test_slow_once_then_fast_succeeds(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(delay=TIMEOUT + 0.5), Answer())
    assert post(client, srv, marker).status_code == 201
    assert len(receiver.calls_for(marker, "pre-create")) == 2


def padded_answer(size: int) -> bytes:
    """A valid JSON answer of exactly `size` bytes, adding a response header."""
    template = '{"HTTPResponse": {"Header": {"X-Pad": "%s"}}}'
    body = (template % ("p" * (size - len(template % "")))).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize(("size", "status"), [(SIZE_LIMIT, 201), (SIZE_LIMIT + 1, 500)])
def test_answer_larger_than_size_limit_fails(
    setup: Setup, client: httpx.Client, marker: str, size: int, status: int
) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "pre-create", Answer(body=padded_answer(size)))
    response = post(client, srv, marker)
    assert response.status_code == status
    if status == 201:
        assert response.headers["x-pad"].startswith("ppp")
    else:
        assert error_code(response) == "ERR_HOOK_FAILED"


def test_reject_upload_over_http(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    answer = {
        "RejectUpload": True,
        "HTTPResponse": {"StatusCode": 403, "Body": "quota exhausted\n", "Header": {"X-Quota": "0"}},
    }
    receiver.script(marker, "pre-create", Answer(body=json.dumps(answer).encode()))
    before = stored_names(srv)
    response = client.post(
        srv.url,
        headers={
            **TUS,
            "Upload-Length": "5",
            "Upload-Metadata": metadata_header({"test": marker}),
            "Content-Type": "application/offset+octet-stream",
        },
        content=b"hello",
    )
    assert (response.status_code, response.text) == (403, "quota exhausted\n")
    assert response.headers["x-quota"] == "0"
    assert stored_names(srv) == before
    assert receiver.calls_for(marker, "post-create") == []


def test_failing_post_hook_never_fails_the_request(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    receiver.script(marker, "post-finish", Answer(status=500))
    url = post(client, srv, marker).headers["location"]
    started = time.monotonic()
    assert patch(client, url, 0, b"hello").status_code == 204
    assert time.monotonic() - started < 1.0  # not waiting for the retries
    receiver.wait_for(marker, lambda c: len([x for x in c if x.hook == "post-finish"]) == 1 + RETRIES)
    assert head(client, url).headers["upload-offset"] == "5"


def hook_metric(srv: TusServer, client: httpx.Client, name: str, hooktype: str) -> float:
    text = client.get(srv.origin + "/metrics").text
    match = re.search(rf'^{name}\{{hooktype="{hooktype}"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_hook_metrics_count_invocations_and_errors(setup: Setup, client: httpx.Client, marker: str) -> None:
    srv, receiver = setup.server, setup.receiver
    invocations = hook_metric(srv, client, "tusd_hook_invocations_total", "pre-create")
    errors = hook_metric(srv, client, "tusd_hook_errors_total", "pre-create")
    assert post(client, srv, marker).status_code == 201
    assert hook_metric(srv, client, "tusd_hook_invocations_total", "pre-create") == invocations + 1
    assert hook_metric(srv, client, "tusd_hook_errors_total", "pre-create") == errors

    failing = uuid.uuid4().hex
    receiver.script(failing, "pre-create", Answer(status=404))
    assert post(client, srv, failing).status_code == 500
    assert hook_metric(srv, client, "tusd_hook_invocations_total", "pre-create") == invocations + 2
    assert hook_metric(srv, client, "tusd_hook_errors_total", "pre-create") == errors + 1
