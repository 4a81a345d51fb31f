"""Request logs: one line per request, text or JSON, with the client's X-Request-ID.

tusd logs every request with its method, path and `X-Request-ID` (truncated to
36 characters, `getRequestId` in pkg/handler/unrouted_handler.go); `-log-format
json` makes every log line a JSON object. Ours: logger `tusd_py.requests`, on
the server's stderr, `event=RequestCompleted method=... path=... status=...
duration_ms=... request_id=...`; `-verbose=false` silences it.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest
from conftest import TUS, TusServer, create, patch

TIMEOUT = 10.0


def request_lines(server: TusServer) -> list[str]:
    return [line for line in server.log().splitlines() if "RequestCompleted" in line]


_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def text_fields(line: str) -> dict[str, str]:
    """`key=value` pairs after the logger's prefix; quoted values (as slog writes
    empty values or values with spaces) are unquoted."""
    fields = {}
    for key, value in _PAIR.findall(line[line.index("event=") :]):
        fields[key] = json.loads(value) if value.startswith('"') else value
    return fields


def wait_for_lines(server: TusServer, marker: str, count: int = 1) -> list[str]:
    """The log lines containing `marker`, once there are `count` of them (the line
    is written after the response, so the client may be faster than the log)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = [line for line in request_lines(server) if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def new_request_id() -> str:
    return uuid.uuid4().hex[:20]


# --- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, upload_path, status",
    [
        ("POST", "", 201),
        ("OPTIONS", "", 200),
        ("HEAD", "0123456789abcdef0123456789abcdef", 404),
        ("GET", "0123456789abcdef0123456789abcdef", 404),
        ("PUT", "", 405),
    ],
)
def test_one_text_line_per_request_with_method_path_status_and_request_id(
    server: TusServer, client: httpx.Client, method: str, upload_path: str, status: int
) -> None:
    request_id = new_request_id()
    headers = {**TUS, "Upload-Length": "3", "X-Request-ID": request_id}
    response = client.request(method, server.url + upload_path, headers=headers)
    assert response.status_code == status
    lines = wait_for_lines(server, f"request_id={request_id}")
    assert len(lines) == 1, lines
    fields = text_fields(lines[0])
    assert fields["method"] == method
    assert fields["path"] == "/files/" + upload_path
    assert fields["status"] == str(status)
    assert fields["request_id"] == request_id
    assert float(fields["duration_ms"]) >= 0


def test_every_request_of_an_upload_is_logged_once(server: TusServer, client: httpx.Client) -> None:
    request_id = new_request_id()
    url = create(client, server, 6, **{"X-Request-ID": request_id})
    assert patch(client, url, 0, b"abc", **{"X-Request-ID": request_id}).status_code == 204
    assert patch(client, url, 1, b"zzz", **{"X-Request-ID": request_id}).status_code == 409
    assert patch(client, url, 3, b"def", **{"X-Request-ID": request_id}).status_code == 204
    assert client.delete(url, headers={**TUS, "X-Request-ID": request_id}).status_code == 204
    lines = wait_for_lines(server, f"request_id={request_id}", 5)
    observed = [(f["method"], f["path"], f["status"]) for f in map(text_fields, lines)]
    path = "/files/" + url.rsplit("/", 1)[1]
    assert observed == [
        ("POST", "/files/", "201"),
        ("PATCH", path, "204"),
        ("PATCH", path, "409"),
        ("PATCH", path, "204"),
        ("DELETE", path, "204"),
    ]


def test_request_id_is_truncated_to_36_characters(server: TusServer, client: httpx.Client) -> None:
    request_id = uuid.uuid4().hex + uuid.uuid4().hex  # 64 characters
    assert client.options(server.url, headers={"X-Request-ID": request_id}).status_code == 200
    lines = wait_for_lines(server, request_id[:36])
    assert len(lines) == 1, lines
    assert text_fields(lines[0])["request_id"] == request_id[:36]
    assert request_id[:37] not in lines[0]


def test_request_without_request_id_is_logged_with_an_empty_one(server: TusServer, client: httpx.Client) -> None:
    marker = uuid.uuid4().hex  # in the path, since there is no id to find the line by
    assert client.head(server.url + marker, headers=TUS).status_code == 404
    lines = wait_for_lines(server, marker)
    assert len(lines) == 1, lines
    assert text_fields(lines[0])["request_id"] == ""


def test_method_override_logs_the_effective_method(server: TusServer, client: httpx.Client) -> None:  # T-CORE-8
    # Decided: method override runs first, so the log shows what was done (tusd's
    # request logger is built before the override and shows the wire method, POST).
    url = create(client, server, 2)
    request_id = new_request_id()
    headers = {**TUS, "X-HTTP-Method-Override": "DELETE", "X-Request-ID": request_id}
    assert client.post(url, headers=headers).status_code == 204
    lines = wait_for_lines(server, f"request_id={request_id}")
    assert len(lines) == 1, lines
    assert text_fields(lines[0])["method"] == "DELETE"
    assert text_fields(lines[0])["status"] == "204"


# --- JSON ------------------------------------------------------------------------------------------


def test_json_log_format_gives_json_lines_with_the_request_fields(make_server, client: httpx.Client) -> None:
    server = make_server("-log-format", "json")
    request_id = new_request_id()
    url = create(client, server, 3, **{"X-Request-ID": request_id})
    assert patch(client, url, 0, b"abc", **{"X-Request-ID": request_id}).status_code == 204
    wait_for_lines(server, request_id, 2)

    records = []
    for line in server.log().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        assert isinstance(record, dict), line
        records.append(record)
    ours = [r for r in records if r.get("request_id") == request_id]
    assert [(r["method"], r["path"], r["status"]) for r in ours] == [
        ("POST", "/files/", 201),
        ("PATCH", "/files/" + url.rsplit("/", 1)[1], 204),
    ]


def test_json_log_escapes_hostile_request_ids(make_server, client: httpx.Client) -> None:
    server = make_server("-log-format=json")
    request_id = "a\"b\\c' d}{"
    assert client.options(server.url, headers={"X-Request-ID": request_id}).status_code == 200
    lines = wait_for_lines(server, "RequestCompleted")
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["request_id"] == request_id


# --- quiet -----------------------------------------------------------------------------------------


def test_verbose_false_logs_no_request_lines(make_server, client: httpx.Client) -> None:
    server = make_server("-verbose=false")
    url = create(client, server, 3)
    assert patch(client, url, 0, b"abc").status_code == 204
    assert client.head(server.url + "0" * 32, headers=TUS).status_code == 404
    server.stop()  # everything it would log is written by the time it exits
    assert request_lines(server) == []
    assert "request_id" not in server.log()
