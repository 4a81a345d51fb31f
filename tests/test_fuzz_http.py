"""HTTP-level fuzzing of a live server, deterministic from a fixed seed.

`random.Random(1234)` draws a fixed list of raw requests (1500 by default; set
`FUZZ_REQUESTS` to run longer): methods (real ones, garbage tokens, method
override headers), targets (the creation URL, existing uploads, unknown and
hostile ids, percent-encoded random bytes, other paths), random subsets of tus
headers with edge values (negative, huge, non-digit, non-ASCII, empty,
duplicated) and bodies (none, random, chunked, truncated). They go out over raw
sockets from a few threads, so nothing is normalised the way httpx would.

Meanwhile five healthy clients (one tuspy, four httpx with per-request
checksums and a declared whole-file checksum) upload again and again until
the fuzz is over; every one of their uploads must end byte-identical.

Wire policy: never 500 for bad input. The only 5xx this traffic may see is
500 ERR_CONNECTION_RESET for a request whose body we cut short on purpose;
the server must stay up and log no traceback. (A few requests carry the IETF
draft's `Upload-Draft-Interop-Version`, which hands them to tusd_py/ietf.py:
the same rules hold there.)
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import pytest
from conftest import TUS, TusServer, start_server
from tusclient import client as tus_client

SEED = 1234
REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "1500"))
FUZZ_THREADS = 4
HEALTHY_CLIENTS = 5
POOL_SIZE = 30
RACES = 300
SOCKET_TIMEOUT = 10.0
FUZZ_BUDGET = max(60.0, REQUESTS / 20)  # seconds; generous, the default run takes a few
OCTET = "application/offset+octet-stream"
KiB = 1 << 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    srv = start_server(
        tmp_path_factory.mktemp("fuzz-http") / "uploads", "-network-timeout", "5s", "-acquire-lock-timeout", "10s"
    )
    yield srv
    srv.stop()


# --- raw HTTP ----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lowercased names, last value wins
    body: bytes


def _recv_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> bool:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buffer += chunk
    return True


def _recv_exactly(sock: socket.socket, buffer: bytearray, size: int) -> bytes:
    while len(buffer) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


def read_reply(sock: socket.socket, head_request: bool) -> Reply | None:
    """The final response (1xx skipped); None if the server closed without one."""
    buffer = bytearray()
    while True:
        if not _recv_until(sock, buffer, b"\r\n\r\n"):
            return None
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        buffer[:] = rest
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            continue
        if head_request or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = _recv_exactly(sock, buffer, int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while _recv_until(sock, buffer, b"\r\n"):
                size_line, _, rest = bytes(buffer).partition(b"\r\n")
                buffer[:] = rest
                size = int(size_line.split(b";")[0], 16)
                body += _recv_exactly(sock, buffer, size + 2)[:size]
                if size == 0:
                    break
        else:
            while chunk := sock.recv(65536):
                buffer += chunk
            body = bytes(buffer)
        return Reply(status, headers, body)


# --- the fuzz corpus -----------------------------------------------------------------------------

METHODS = ["POST", "PATCH", "HEAD", "GET", "DELETE", "OPTIONS"]
ODD_METHODS = ["PUT", "TRACE", "PROPFIND", "LOCK", "patch", "Post", "FOO", "P@TCH", "GET ", "X" * 300, "", "\xff"]
OVERRIDES = [*METHODS, "PUT", "FOO", "patch", "", " ", "\xff", "HEAD, PATCH", "X" * 300]
HOSTILE_IDS = [
    "..", ".", "%2e%2e", "%2E%2E/%2E%2E/etc/passwd", "../../etc/passwd", "a%2Fb", "%00", "x%00", "a" * 129,
    "x.info", "abc.rollback", "%", "%zz", "%c0%ae%c0%ae", "..;/", "\\..\\", "~", "a b", "%20", "\t",
]  # fmt: skip
OTHER_PATHS = [
    "/", "/metrics", "/nope", "/files", "//files/", "/files//", "/FILES/", "*", "/files/?x=1", "/files/#frag",
    "http://127.0.0.1/files/", "/files/../metrics", "/%66iles/", "/files/a/b/c",
]  # fmt: skip
EDGE_NUMBERS = [
    "0", "1", "-1", "-0", "+1", "01", " 7 ", "1.5", "1e3", "0x10", "abc", "", " ", "9223372036854775807",
    "9223372036854775808", "18446744073709551616", "9" * 30, "9" * 5000, "\u0661\u0662", "\xb2", "1,2", "1 2",
]  # fmt: skip
GARBAGE = ["", " ", "\x00", "\xff\xfe", "\u2603", "\t", "a" * 5000, "%00", '"', "=", ";", ",", ":::", "\x7f"]
HEADER_NAMES = [
    "Tus-Resumable", "Upload-Length", "Upload-Defer-Length", "Upload-Offset", "Upload-Metadata", "Upload-Checksum",
    "Upload-Concat", "Content-Type", "Content-Length", "Transfer-Encoding", "Expect", "Range", "If-None-Match",
    "If-Range", "Want-Repr-Digest", "Repr-Digest", "Origin", "Access-Control-Request-Method", "Host", "Forwarded",
    "X-Forwarded-Host", "X-Forwarded-Proto", "Trailer", "Connection", "X-HTTP-Method-Override", "X-Request-ID",
]  # fmt: skip
# The IETF draft's header takes a request away from tus (to tusd_py/ietf.py), so it is drawn rarely.
IETF_HEADER = "Upload-Draft-Interop-Version"


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    cut: str = ""  # "", "half-close" (send part, shut down writing, read) or "close" (send part, hang up)
    sent_size: int = -1  # bytes of the body sent when cut

    @property
    def header_names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Corpus:
    """Draws requests from one seeded generator; `{id:N}` in a target names pool upload N."""

    def __init__(self, rng: random.Random, pool_size: int) -> None:
        self.rng = rng
        self.pool_size = pool_size

    def pick(self, options):  # type: ignore[no-untyped-def]
        return self.rng.choice(options)

    def number(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return self.pick(EDGE_NUMBERS)
        return str(self.rng.randrange(0, 200 * KiB))

    def text(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return self.pick(GARBAGE)
        if r < 0.7:
            return "".join(chr(self.rng.randrange(0x20, 0x7F)) for _ in range(self.rng.randrange(0, 40)))
        return "".join(chr(self.rng.randrange(0, 0x800)) for _ in range(self.rng.randrange(0, 20)))

    def pool_url(self) -> str:
        index = self.rng.randrange(self.pool_size)
        if self.rng.random() < 0.5:
            return f"{{id:{index}}}"  # relative /files/<id>
        return f"http://127.0.0.1/files/{{id:{index}}}"

    def value(self, name: str) -> str:
        rng, pick = self.rng, self.pick
        if rng.random() < 0.15:
            return self.text()
        match name:
            case "Tus-Resumable":
                return "1.0.0" if rng.random() < 0.85 else pick(["1.0", "0.2.2", "1.0.0, 1.0.0", ""])
            case "Upload-Length" | "Upload-Offset" | "Content-Length":
                return self.number()
            case "Upload-Defer-Length":
                return pick(["1", "1", "0", "2", "true", " 1 ", ""])
            case "Upload-Metadata":
                pairs = [
                    pick(["filename", "filetype", "checksum", "a", "k" * 300, "", "k,", "ke y", "é", "\x01", "a"])
                    + pick([" ", "", "  "])
                    + pick(
                        [
                            _b64(rng.randbytes(rng.randrange(0, 30))),
                            "!!!",
                            "dmFs=",
                            _b64(b"sha256 " + b"0" * 64),
                            _b64(b"md5 " + b"A" * 24),
                            "",
                            "\xff",
                        ]
                    )
                    for _ in range(rng.randrange(0, 5))
                ]
                if rng.random() < 0.05:
                    pairs.append("big " + _b64(b"x" * rng.choice([12000, 13000, 20000])))
                return ",".join(pairs)
            case "Upload-Checksum":
                return (
                    pick(["sha1", "md5", "sha256", "sha512", "crc32", "SHA1", "", "sha-256"])
                    + pick([" ", "", "  "])
                    + pick([_b64(rng.randbytes(rng.choice([0, 16, 20, 32, 64]))), "!!", "", "AAAA"])
                )
            case "Upload-Concat":
                if rng.random() < 0.3:
                    return pick(["partial", "final", "final;", "partial;x", "FINAL;" + self.pool_url()])
                urls = [
                    self.pool_url()
                    if rng.random() < 0.7
                    else pick(
                        [
                            *HOSTILE_IDS,
                            "http://[::1/files/x",
                            "http://[x",
                            "//[",
                            "/files/",
                            "http://h/other/x",
                            "/files/" + "0" * 32,
                            "ftp://a/files/x",
                        ]
                    )
                    for _ in range(rng.randrange(0, 6))
                ]
                if rng.random() < 0.03:
                    urls = ["/files/" + "0" * 32] * 1001
                return "final;" + " ".join(urls)
            case "Content-Type":
                return pick([OCTET] * 6 + ["text/plain", OCTET.upper(), OCTET + "; charset=x", "", "*/*"])
            case "Transfer-Encoding":
                return pick(["chunked", "gzip, chunked", "identity", "chunked, chunked", "x"])
            case "Expect":
                return pick(["100-continue", "100-continue", "200-ok", ""])
            case "Range":
                spec = lambda: pick(["", "0", "1", "2", "5", "9" * 20, "9" * 5000, "-1"])  # noqa: E731
                specs = [f"{spec()}-{spec()}" for _ in range(rng.randrange(1, 4))]
                return pick(["bytes=", "bytes=", "items=", "bytes ", "BYTES="]) + ",".join(specs)
            case "If-None-Match" | "If-Range":
                return pick(['"abc"', "*", 'W/"x"', ",,,", "Wed, 21 Oct 2015 07:28:00 GMT"])
            case "Want-Repr-Digest":
                members = [
                    pick(["sha-256", "sha-512", "md5", "sha", "x", "", "sha-256;q"]) + "=" + self.number()
                    for _ in range(rng.randrange(1, 4))
                ]
                return ", ".join(members)
            case "Repr-Digest":
                return pick(["sha-256", "sha-512", "md5", "sha", "x"]) + "=" + pick([
                    f":{_b64(rng.randbytes(32))}:", f":{_b64(rng.randbytes(64))}:", ":!!:", "::", "abc", ""
                ])  # fmt: skip
            case "Origin":
                return pick(["http://a.example", "null", "", "https://x:99999"])
            case "Access-Control-Request-Method":
                return pick(METHODS + ["FOO"])
            case "Host":
                return pick(["127.0.0.1", "a b", "", "évil", "h:99999", "[::1", "x/y?z#w", "a" * 3000])
            case "Forwarded":
                return pick(["host=a.example;proto=https", 'host="[::1]:8"', "proto=ftp", "host=a/b", ";;;", "="])
            case "X-Forwarded-Host" | "X-Forwarded-Proto":
                return pick(["a.example", "https", "ftp", "a/b", ",", ""])
            case "Trailer":
                return pick(["Upload-Checksum", "X", ""])
            case "Connection":
                return pick(["close", "keep-alive", "upgrade", "Upgrade, HTTP2-Settings"])
            case "X-HTTP-Method-Override":
                return pick(OVERRIDES)
            case "Upload-Draft-Interop-Version":
                return pick(["6", "7", "x"])
        return self.text()

    def header_name(self) -> str:
        return IETF_HEADER if self.rng.random() < 0.02 else self.pick(HEADER_NAMES)

    def target(self) -> str:
        r = self.rng.random()
        if r < 0.2:
            return self.pick(["/files/", "/files/", "/files"])
        if r < 0.45:
            return f"/files/{{id:{self.rng.randrange(self.pool_size)}}}"
        if r < 0.6:
            return "/files/" + self.rng.randbytes(16).hex()
        if r < 0.75:
            return "/files/" + self.pick(HOSTILE_IDS)
        if r < 0.9:
            return "/files/" + quote(self.rng.randbytes(self.rng.randrange(1, 40)), safe="")
        return self.pick(OTHER_PATHS)

    def method(self) -> str:
        return self.pick(METHODS) if self.rng.random() < 0.8 else self.pick(ODD_METHODS)

    def body(self) -> bytes:
        r = self.rng.random()
        if r < 0.2:
            return b""
        if r < 0.8:
            return self.rng.randbytes(self.rng.randrange(1, 4 * KiB))
        return self.rng.randbytes(self.rng.randrange(1, 70 * KiB))

    def checksum(self, body: bytes) -> str:
        algorithm = self.pick(["sha1", "md5", "sha256", "sha512"])
        digest = hashlib.new(algorithm, body).digest()
        if self.rng.random() < 0.3:
            digest = hashlib.new(algorithm, body + b"x").digest()  # a mismatch: 460
        return f"{algorithm} {_b64(digest)}"

    def structured(self) -> Request:
        """A request a real client could send, for one tus operation."""
        rng, pick = self.rng, self.pick
        pool_id = f"/files/{{id:{rng.randrange(self.pool_size)}}}"
        tus = [("Tus-Resumable", "1.0.0")]
        operation = pick(["create", "create", "upload", "patch", "patch", "patch", "head", "get", "get", "delete",
                          "final", "options"])  # fmt: skip
        match operation:
            case "create" | "upload":
                headers = tus + (
                    [("Upload-Length", str(rng.randrange(0, 128 * KiB)))]
                    if rng.random() < 0.8
                    else [("Upload-Defer-Length", "1")]
                )
                if rng.random() < 0.5:
                    headers.append(("Upload-Metadata", self.value("Upload-Metadata")))
                if rng.random() < 0.2:
                    headers.append(("Upload-Concat", "partial"))
                body = self.body() if operation == "upload" else b""
                if operation == "upload":
                    headers.append(("Content-Type", OCTET))
                    if rng.random() < 0.3:
                        headers.append(("Upload-Checksum", self.checksum(body)))
                return Request("POST", "/files/", headers, body)
            case "patch":
                body = self.body()
                headers = tus + [("Content-Type", OCTET), ("Upload-Offset", pool_id.replace("/files/{id", "{offset"))]
                if rng.random() < 0.3:
                    headers.append(("Upload-Checksum", self.checksum(body)))
                if rng.random() < 0.2:
                    headers.append(("Upload-Length", pick([str(rng.randrange(0, 256 * KiB)), *EDGE_NUMBERS])))
                return Request("PATCH", pool_id, headers, body)
            case "head":
                headers = tus + ([("Want-Repr-Digest", self.value("Want-Repr-Digest"))] if rng.random() < 0.5 else [])
                return Request("HEAD", pool_id, headers, b"")
            case "get":
                headers = [(name, self.value(name)) for name in ("Range", "If-None-Match", "Want-Repr-Digest")
                           if rng.random() < 0.5]  # fmt: skip
                return Request("GET", pool_id, headers, b"")
            case "delete":
                target = pool_id if rng.random() < 0.2 else "/files/" + rng.randbytes(16).hex()
                return Request("DELETE", target, tus, b"")
            case "final":
                return Request("POST", "/files/", tus + [("Upload-Concat", self.value("Upload-Concat"))], b"")
        return Request("OPTIONS", pick(["/files/", pool_id]), [], b"")

    def mutate(self, request: Request) -> None:
        rng = self.rng
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            r = rng.random()
            if r < 0.3 and request.headers:  # one header gets an edge or random value
                index = rng.randrange(len(request.headers))
                name = request.headers[index][0]
                request.headers[index] = (name, self.text() if rng.random() < 0.3 else self.value(name))
            elif r < 0.4 and request.headers:  # one header goes missing
                del request.headers[rng.randrange(len(request.headers))]
            elif r < 0.6:  # a random tus (or other) header joins
                name = self.header_name()
                request.headers.append((name, self.value(name)))
            elif r < 0.67 and request.headers:  # duplicated, same or different value
                name, value = rng.choice(request.headers)
                request.headers.append((name, value if rng.random() < 0.5 else self.value(name)))
            elif r < 0.77:
                request.method = self.method()
            elif r < 0.87:
                request.target = self.target()
            elif r < 0.93:
                request.body = self.body()
            elif r < 0.96:
                request.headers.append(("X-Padding", "p" * rng.choice([30000, 70000])))  # headers > 64 KiB
            else:
                request.headers += [(f"X-Many-{i}", "v") for i in range(rng.choice([100, 2000]))]

    def request(self) -> Request:
        rng = self.rng
        if rng.random() < 0.75:
            request = self.structured()
            self.mutate(request)
        else:  # anything goes
            names = [self.header_name() for _ in range(rng.randrange(0, 6))]
            request = Request(self.method(), self.target(), [(name, self.value(name)) for name in names], self.body())
        names = request.header_names
        if "transfer-encoding" in names:
            request.body = self.chunked(request.body)
        elif "content-length" not in names and (request.body or rng.random() < 0.3) and rng.random() < 0.95:
            request.headers.append(("Content-Length", str(len(request.body))))
        if request.body and rng.random() < 0.08:
            request.cut = rng.choice(["half-close", "close"])
            request.sent_size = rng.randrange(0, len(request.body))
        if "connection" not in names:
            request.headers.append(("Connection", "close"))
        return request

    def chunked(self, body: bytes) -> bytes:
        out = bytearray()
        position = 0
        while position < len(body):
            size = min(self.rng.randrange(1, 8 * KiB), len(body) - position)
            out += f"{size:x}\r\n".encode() + body[position : position + size] + b"\r\n"
            position += size
        if self.rng.random() < 0.1:
            out += self.pick([b"zz\r\n", b"-1\r\n", b"ffffffffffffffffff\r\n", b"1\r\nab\r\n"])
        return bytes(out) + b"0\r\n\r\n"


def corpus(count: int, pool_size: int) -> list[Request]:
    source = Corpus(random.Random(SEED), pool_size)
    return [source.request() for _ in range(count)]


# --- running the fuzz ----------------------------------------------------------------------------


@dataclass
class Outcome:
    request: Request
    reply: Reply | None
    error: str = ""  # socket error while sending or reading


def current_offset(port: int, upload_id: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(f"HEAD /files/{upload_id} HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n\r\n".encode())
        reply = read_reply(sock, head_request=True)
    return reply.headers.get("upload-offset", "0") if reply is not None else "0"


def encode_request(request: Request, port: int, pool: list[str]) -> bytes:
    def fill(text: str) -> str:
        text = re.sub(r"\{offset:(\d+)\}", lambda m: current_offset(port, pool[int(m[1])]), text)
        return re.sub(r"\{id:(\d+)\}", lambda m: pool[int(m[1])], text)

    lines = [f"{request.method} {fill(request.target)} HTTP/1.1"]
    if "host" not in request.header_names:
        lines.append(f"Host: 127.0.0.1:{port}")
    lines += [f"{name}: {fill(value)}" for name, value in request.headers]
    head = "\r\n".join(lines) + "\r\n\r\n"
    # Header values are bytes on the wire: non-latin-1 text goes out as UTF-8.
    return head.encode("utf-8") if not head.isascii() and max(head) > "\xff" else head.encode("latin-1")


def send(server: TusServer, request: Request, pool: list[str]) -> Outcome:
    payload = encode_request(request, server.port, pool)
    body = request.body if not request.cut else request.body[: request.sent_size]
    with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT) as sock:
        try:
            sock.sendall(payload + body)
            if request.cut == "close":
                return Outcome(request, None, "hung up")
            if request.cut == "half-close":
                sock.shutdown(socket.SHUT_WR)
        except OSError as error:  # the server answered early and closed; its answer may be waiting
            sent_error = type(error).__name__
        else:
            sent_error = ""
        try:
            return Outcome(request, read_reply(sock, request.method == "HEAD"), sent_error)
        except OSError as error:
            return Outcome(request, None, sent_error or type(error).__name__)


def allowed_5xx(request: Request) -> set[tuple[int, str]]:
    if request.cut:
        return {(500, "ERR_CONNECTION_RESET")}  # we cut the body short ourselves
    return set()


def problem(outcome: Outcome) -> str | None:
    """Why this outcome breaks the wire policy, or None."""
    reply = outcome.reply
    if reply is None or reply.status < 500:
        return None
    allowed = allowed_5xx(outcome.request)
    if outcome.request.method == "HEAD" and reply.status in {status for status, _ in allowed}:
        return None  # a HEAD answer has no body to read the code from
    code = reply.body.split(b":", 1)[0].decode("latin-1") if reply.body.startswith(b"ERR_") else ""
    if (reply.status, code) in allowed:
        return None
    return f"{reply.status} {reply.body[:120]!r}"


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else f"{text[:60]!r}...({len(text)} chars)"


def describe(request: Request) -> str:
    headers = ", ".join(f"{name}: {_short(value)}" for name, value in request.headers if name != "Connection")
    return f"{request.method[:20]!r} {request.target[:80]!r} [{headers}] body={len(request.body)} cut={request.cut!r}"


# --- healthy uploads beside the fuzz -------------------------------------------------------------


@dataclass
class Healthy:
    done: threading.Event
    uploads: list[tuple[str, bytes]] = field(default_factory=list)  # (url, data) that finished
    failures: list[str] = field(default_factory=list)


def healthy_httpx(server: TusServer, number: int, state: Healthy) -> None:
    rng = random.Random(SEED + number)
    with httpx.Client(timeout=30.0) as client:
        while not state.done.is_set() or not state.uploads:
            data = rng.randbytes(rng.randrange(256 * KiB, 1024 * KiB))
            digest = hashlib.sha256(data).hexdigest()
            metadata = f"filename {_b64(f'healthy-{number}.bin'.encode())},checksum {_b64(f'sha256 {digest}'.encode())}"
            response = client.post(
                server.url, headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata}
            )
            if response.status_code != 201:
                state.failures.append(f"create: {response.status_code} {response.text}")
                return
            url = response.headers["location"]
            offset = 0
            while offset < len(data):
                chunk = data[offset : offset + rng.randrange(16 * KiB, 200 * KiB)]
                response = client.patch(
                    url,
                    content=chunk,
                    headers={
                        **TUS,
                        "Content-Type": OCTET,
                        "Upload-Offset": str(offset),
                        "Upload-Checksum": f"sha1 {_b64(hashlib.sha1(chunk).digest())}",
                    },
                )
                if response.status_code != 204:
                    state.failures.append(f"patch {url} at {offset}: {response.status_code} {response.text}")
                    return
                offset = int(response.headers["upload-offset"])
            state.uploads.append((url, data))


def healthy_tuspy(server: TusServer, state: Healthy) -> None:
    rng = random.Random(SEED)
    while not state.done.is_set() or not state.uploads:
        data = rng.randbytes(rng.randrange(256 * KiB, 1024 * KiB))
        uploader = tus_client.TusClient(server.url).uploader(
            file_stream=io.BytesIO(data), chunk_size=128 * KiB, metadata={"filename": "tuspy.bin"}, upload_checksum=True
        )
        uploader.upload()
        assert uploader.url is not None
        state.uploads.append((uploader.url, data))


def run_healthy(target, *args) -> None:  # type: ignore[no-untyped-def]
    state = args[-1]
    try:
        target(*args)
    except Exception as error:  # noqa: BLE001 - reported by the test
        state.failures.append(f"{target.__name__}: {type(error).__name__}: {error}")


def make_pool(client: httpx.Client, server: TusServer) -> list[str]:
    """Uploads for the fuzz to hit: finished partials (for finals), finished downloads with
    metadata, empty, half-done and deferred uploads with room for PATCHes."""
    ids = []
    for index in range(POOL_SIZE):
        data = random.Random(index).randbytes(100 + index)
        headers = {**TUS, "Content-Type": OCTET}
        match index % 6:
            case 0:
                headers |= {"Upload-Length": str(len(data)), "Upload-Concat": "partial"}
            case 1:
                metadata = {"filename": 'a"b/c.txt', "filetype": "text/plain"}
                headers |= {"Upload-Length": str(len(data)), "Upload-Metadata": ",".join(
                    f"{key} {_b64(value.encode())}" for key, value in metadata.items())}  # fmt: skip
            case 2:
                headers |= {"Upload-Length": str(4 << 20)}
                data = b""
            case 3:
                headers |= {"Upload-Defer-Length": "1"}
            case 4:
                headers |= {"Upload-Length": str(2 << 20)}
            case 5:
                headers |= {"Upload-Length": "0"}
                data = b""
        response = client.post(server.url, headers=headers, content=data)
        assert response.status_code == 201, response.text
        ids.append(response.headers["location"].rsplit("/", 1)[1])
    return ids


def test_fuzzed_requests_never_get_a_500_and_healthy_uploads_finish(server: TusServer) -> None:
    # Wire policy "never 500 for bad input"; T-CORE-*: Tus-Resumable on every tus response.
    with httpx.Client(timeout=30.0) as client:
        pool = make_pool(client, server)
    requests = corpus(REQUESTS, len(pool))

    healthy = Healthy(threading.Event())
    threads = [threading.Thread(target=run_healthy, args=(healthy_tuspy, server, healthy))]
    threads += [
        threading.Thread(target=run_healthy, args=(healthy_httpx, server, number, healthy))
        for number in range(1, HEALTHY_CLIENTS)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(FUZZ_THREADS) as executor:
            outcomes = list(executor.map(lambda request: send(server, request, pool), requests))
    finally:
        healthy.done.set()
        for thread in threads:
            thread.join(timeout=60)
    elapsed = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), "a healthy client is stuck"
    assert elapsed < FUZZ_BUDGET, f"fuzz took {elapsed:.1f}s"

    statuses = Counter(outcome.reply.status if outcome.reply else outcome.error or "no reply" for outcome in outcomes)
    problems = [f"{problem(o)} <- {describe(o.request)}" for o in outcomes if problem(o) is not None]
    # Every request we sent whole got an answer (a cut body may get none).
    problems += [
        f"no reply <- {describe(o.request)}" for o in outcomes if o.reply is None and not (o.request.cut or o.error)
    ]
    assert not problems, f"{len(problems)} bad 5xx (statuses: {dict(statuses)}):\n" + "\n".join(problems[:15])
    # Our app answered (not the HTTP parser, which speaks before the app sees a request): tus headers.
    untagged = [
        describe(o.request)
        for o in outcomes
        if o.reply is not None and o.reply.body.startswith(b"ERR_") and o.reply.headers.get("tus-resumable") != "1.0.0"
    ]
    assert not untagged, "\n".join(untagged[:10])

    # The server is alive, answers, and logged no traceback.
    assert server.process.poll() is None
    with httpx.Client(timeout=10.0) as client:
        assert client.options(server.url).status_code == 200
        assert not healthy.failures, healthy.failures
        assert len(healthy.uploads) >= HEALTHY_CLIENTS
        print(f"fuzz: {len(outcomes)} requests in {elapsed:.1f}s, {dict(statuses)}; {len(healthy.uploads)} healthy")
        for url, data in healthy.uploads:
            response = client.head(url, headers=TUS)
            assert response.headers["upload-offset"] == str(len(data))
            assert (server.upload_dir / url.rsplit("/", 1)[1]).read_bytes() == data
            assert client.get(url).content == data
    # Nothing left behind: every upload is a data file, its .info and maybe its .lock (which
    # lives as long as the upload); no stop, temporary or rollback file, no trace of others.
    names = {path.name for path in server.upload_dir.iterdir()}
    junk = {name for name in names if not re.fullmatch(r"[0-9a-f]{32}(\.info|\.lock)?", name)}
    assert not junk, sorted(junk)[:20]
    uploads = {name for name in names if "." not in name}
    assert {name for name in names if name.endswith(".info")} == {name + ".info" for name in uploads}
    assert {name for name in names if name.endswith(".lock")} <= {name + ".lock" for name in uploads}
    log = server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_download_racing_termination_is_whole_or_404(server: TusServer) -> None:
    # Found by the fuzz: GET takes no lock, so a DELETE can remove the file between the
    # handler's stat and the response opening it. Every answer must be the whole upload or
    # 404 ERR_UPLOAD_NOT_FOUND; never a 200 whose body stops short (a dropped connection).
    data = random.Random(SEED).randbytes(2000)
    outcomes: Counter[str] = Counter()
    with (
        httpx.Client(timeout=10.0) as creator,
        httpx.Client(timeout=10.0) as getter,
        httpx.Client(timeout=10.0) as deleter,
        ThreadPoolExecutor(1) as background,
    ):
        for _ in range(RACES):
            response = creator.post(
                server.url, headers={**TUS, "Upload-Length": str(len(data)), "Content-Type": OCTET}, content=data
            )
            url = response.headers["location"]
            assert creator.get(url).content == data  # downloadable: the race is GET against DELETE only
            start = threading.Barrier(2, timeout=10)

            def delete(url: str = url, start: threading.Barrier = start) -> int:
                start.wait()
                return deleter.delete(url, headers=TUS).status_code

            deleted = background.submit(delete)
            start.wait()
            try:
                answer = getter.get(url)
                outcome = f"{answer.status_code} {answer.content == data or answer.text[:40]}"
            except httpx.TransportError as error:
                outcome = f"dropped: {type(error).__name__}"
            outcomes[outcome] += 1
            assert deleted.result(timeout=10) == 204
    assert set(outcomes) <= {"200 True", "404 ERR_UPLOAD_NOT_FOUND: upload not found\n"}, dict(outcomes)
    assert "Exception in ASGI application" not in server.log()
