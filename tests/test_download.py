"""GET <upload-url>: downloading a finished upload (spec_notes/downloads.md; tusd serves
GET too, tus 1.0 has no download rule).

Headers: Content-Type from a plain `filetype`, Content-Disposition inline only for tusd's
allow-list, safe file names (RFC 6266 / RFC 8187), strong ETag = "<size hex>-<mtime ns hex>" of
the stored bytes, Last-Modified, Accept-Ranges, nosniff, Repr-Digest (a recorded digest, or the
one Want-Repr-Digest asks for). Ranges, If-Range and If-None-Match as RFC 9110 says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from conftest import TUS, TusServer, create, head, patch, proc_status_kib

DATA = random.Random(21).randbytes(100_000)
SIZE = len(DATA)
MiB = 1 << 20


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def upload(client: httpx.Client, server: TusServer, data: bytes, **meta: bytes | None) -> str:
    """A finished upload of `data` with the given raw metadata (None: key without value)."""
    header = ",".join(key if value is None else f"{key} {b64(value)}" for key, value in meta.items())
    url = create(client, server, len(data), **({"Upload-Metadata": header} if meta else {}))
    if data:
        assert patch(client, url, 0, data).status_code == 204
    return url


@pytest.fixture(scope="module")
def png_url(server: TusServer) -> str:
    with httpx.Client(timeout=10.0) as c:
        return upload(c, server, DATA, filename=b"photo.png", filetype=b"image/png")


def sha256_field(data: bytes) -> str:
    return f"sha-256=:{b64(hashlib.sha256(data).digest())}:"


# Asks for the sha-256 (RFC 9530 section 4): an upload that declared no digest reports none unasked.
WANT_SHA256 = {"Want-Repr-Digest": "sha-256=10"}


def data_file(server: TusServer, url: str) -> Path:
    return server.upload_dir / url.rsplit("/", 1)[1]


def stored_etag(server: TusServer, url: str) -> str:
    """The ETag the stored bytes must carry: their size and modification time (ns), in hex."""
    stat = data_file(server, url).stat()
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def content_etag(data: bytes) -> str:
    """A well-formed strong validator that is not ours (the content-hash ETag of old releases)."""
    return f'"{hashlib.sha256(data).hexdigest()}"'


def recorded_digests(server: TusServer, url: str) -> dict[str, str]:
    """The `Digests` the upload's .info records (base64 by tus algorithm name)."""
    info_file = data_file(server, url).parent / (data_file(server, url).name + ".info")
    return dict(json.loads(info_file.read_text()).get("Digests", {}))


def raw_get(server: TusServer, url: str) -> tuple[str, list[tuple[str, str]]]:
    """GET over a plain socket: the status line and every header line exactly as sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10.0) as sock:
        request = f"GET {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the response head"
            received += chunk
    status, *lines = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        assert sep and name and name == name.strip(), f"not a header line: {line!r}"
        headers.append((name.lower(), value.strip()))
    return status, headers


# --- a plain GET -------------------------------------------------------------------------------


def test_get_finished_upload(server: TusServer, client: httpx.Client, png_url: str) -> None:
    response = client.get(png_url, headers=WANT_SHA256)  # no Tus-Resumable: browsers send none
    assert response.status_code == 200
    assert response.content == DATA
    h = response.headers
    assert h["content-length"] == str(SIZE)
    assert h["content-type"] == "image/png"
    assert h["content-disposition"] == 'inline; filename="photo.png"'
    assert h["etag"] == stored_etag(server, png_url)
    assert h["accept-ranges"] == "bytes"
    assert h["x-content-type-options"] == "nosniff"
    assert h["repr-digest"] == sha256_field(DATA)
    assert h["tus-resumable"] == "1.0.0"
    modified = parsedate_to_datetime(h["last-modified"]).timestamp()
    assert abs(modified - data_file(server, png_url).stat().st_mtime) < 2


def test_etag_is_the_same_on_every_get(server: TusServer, client: httpx.Client, png_url: str) -> None:
    # A finished upload's bytes never change, so neither does its strong validator: whole,
    # ranged, with or without a digest asked for.
    tags = {
        client.get(png_url).headers["etag"],
        client.get(png_url, headers={"Range": "bytes=0-0"}).headers["etag"],
        client.get(png_url, headers=WANT_SHA256).headers["etag"],
    }
    assert tags == {stored_etag(server, png_url)}


def test_undeclared_upload_reports_a_digest_only_once_asked(server: TusServer, client: httpx.Client) -> None:
    # No digest declared: none is computed while bytes arrive, so none is reported unasked.
    url = upload(client, server, b"abc", filename=b"a.txt")
    plain = client.get(url)
    assert plain.status_code == 200 and plain.content == b"abc"
    assert "repr-digest" not in plain.headers
    assert recorded_digests(server, url) == {}
    # Asked for: computed from the stored bytes, reported, and recorded in the .info ...
    asked = client.get(url, headers=WANT_SHA256)
    assert asked.status_code == 200 and asked.content == b"abc"
    assert asked.headers["repr-digest"] == sha256_field(b"abc")
    assert recorded_digests(server, url) == {"sha256": b64(hashlib.sha256(b"abc").digest())}
    # ... so later requests that ask for nothing report it too.
    assert client.get(url).headers["repr-digest"] == sha256_field(b"abc")
    assert head(client, url).headers["repr-digest"] == sha256_field(b"abc")


def test_declared_digest_is_reported_unasked(server: TusServer, client: httpx.Client) -> None:
    md5 = hashlib.md5(DATA).digest()
    url = upload(client, server, DATA, checksum=f"md5 {md5.hex()}".encode())
    response = client.get(url)
    assert response.status_code == 200 and response.content == DATA
    assert response.headers["repr-digest"] == f"md5=:{b64(md5)}:"
    assert recorded_digests(server, url) == {"md5": b64(md5)}


def test_get_with_tus_resumable_works_too(client: httpx.Client, png_url: str) -> None:
    response = client.get(png_url, headers=TUS)
    assert response.status_code == 200 and response.content == DATA


@pytest.mark.parametrize(
    "filetype, content_type, disposition",
    [
        (b"image/png", "image/png", "inline"),
        (b"image/jpeg", "image/jpeg", "inline"),
        (b"video/mp4", "video/mp4", "inline"),
        (b"text/plain", "text/plain", "inline"),
        (b"text/html", "text/html", "attachment"),
        (b"image/svg+xml", "image/svg+xml", "attachment"),
        (b"application/pdf", "application/pdf", "attachment"),
        (b"text/html<script>", "application/octet-stream", "attachment"),
        (b"text/html\r\nX-Evil: 1", "application/octet-stream", "attachment"),
        (b"text/plain; charset=utf-8", "application/octet-stream", "attachment"),
        (b"", "application/octet-stream", "attachment"),
        (None, "application/octet-stream", "attachment"),
    ],
)
def test_content_type_and_disposition_from_filetype(
    server: TusServer, client: httpx.Client, filetype: bytes | None, content_type: str, disposition: str
) -> None:
    url = upload(client, server, b"<html><script>alert(1)</script></html>", filetype=filetype, filename=b"f")
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == content_type
    assert response.headers["content-disposition"] == f'{disposition}; filename="f"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-evil" not in response.headers


def test_no_metadata_at_all(server: TusServer, client: httpx.Client) -> None:
    url = upload(client, server, b"abc")
    response = client.get(url)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == "attachment"


def test_non_ascii_filename_uses_rfc8187(server: TusServer, client: httpx.Client) -> None:
    name = "Résumé – 日本 🎉.png"
    url = upload(client, server, b"x", filename=name.encode(), filetype=b"image/png")
    header = client.get(url).headers["content-disposition"]
    assert header.startswith("inline; filename=\"R_sum_ _ __ _.png\"; filename*=UTF-8''")
    extended = header.split("filename*=UTF-8''", 1)[1]
    assert extended.isascii() and " " not in extended
    assert unquote(extended, errors="strict") == name


@pytest.mark.parametrize(
    "name, quoted",
    [
        (b'say "hi".txt', "say _hi_.txt"),
        (b"../../etc/passwd", "passwd"),
        (b"..\\..\\windows\\win.ini", "win.ini"),
        (b"100%.txt", "100_.txt"),
        (b"evil\r\nSet-Cookie: a=b\r\n\r\n<html>.txt", "evilSet-Cookie: a=b<html>.txt"),
        (b"tab\tnul\x00del\x7f.txt", "tabnuldel.txt"),
    ],
)
def test_hostile_filename_stays_one_safe_header_line(
    server: TusServer, client: httpx.Client, name: bytes, quoted: str
) -> None:
    # Base64 metadata can carry any byte, CR and LF included.
    url = upload(client, server, b"x", filename=name)
    status, headers = raw_get(server, url)
    assert status == "HTTP/1.1 200 OK"
    names = [n for n, _ in headers]
    assert "set-cookie" not in names
    dispositions = [v for n, v in headers if n == "content-disposition"]
    assert len(dispositions) == 1
    assert dispositions[0].startswith(f'attachment; filename="{quoted}"')


def test_filename_that_is_not_utf8(server: TusServer, client: httpx.Client) -> None:
    # Metadata values are bytes; a Latin-1 name is not valid UTF-8. Never a 500.
    url = upload(client, server, b"x", filename=b"caf\xe9.txt", filetype=b"text/plain")
    status, headers = raw_get(server, url)
    assert status == "HTTP/1.1 200 OK"
    disposition = dict(headers)["content-disposition"]
    assert disposition.startswith('inline; filename="caf_.txt"')
    assert disposition.isascii()


def test_concatenated_upload_downloads_the_whole(server: TusServer, client: httpx.Client) -> None:
    parts = [DATA[:30_000], DATA[30_000:]]
    urls = []
    for part in parts:
        url = create(client, server, len(part), **{"Upload-Concat": "partial"})
        assert patch(client, url, 0, part).status_code == 204
        urls.append(url)
    response = client.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
    assert response.status_code == 201
    final_url = response.headers["location"]
    downloaded = client.get(final_url, headers=WANT_SHA256)
    assert downloaded.content == DATA
    assert downloaded.headers["etag"] == stored_etag(server, final_url)
    assert downloaded.headers["repr-digest"] == sha256_field(DATA)


# --- what cannot be downloaded -----------------------------------------------------------------


def test_unfinished_upload_is_404(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, SIZE)
    assert patch(client, url, 0, DATA[:1000]).status_code == 204
    response = client.get(url)
    assert response.status_code == 404
    assert response.text.startswith("ERR_UPLOAD_NOT_FINISHED")
    assert response.headers["tus-resumable"] == "1.0.0"


def test_deferred_length_upload_is_404(server: TusServer, client: httpx.Client) -> None:
    url = create(client, server, None)
    assert patch(client, url, 0, b"abc").status_code == 204
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("path", ["0123456789abcdef0123456789abcdef", "..%2F..%2Fetc%2Fpasswd", "x.info"])
def test_unknown_or_hostile_id_is_404(server: TusServer, client: httpx.Client, path: str) -> None:
    assert client.get(server.url + path).status_code == 404


def test_deleted_upload_is_404(server: TusServer, client: httpx.Client) -> None:
    url = upload(client, server, b"abc")
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.get(url).status_code == 404


def test_disable_download_answers_405(make_server: Callable[..., TusServer], client: httpx.Client) -> None:
    server = make_server("-disable-download")
    url = upload(client, server, b"abc")
    response = client.get(url)
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert "GET" not in allowed and {"HEAD", "PATCH"} <= allowed
    assert head(client, url).headers["upload-offset"] == "3"


# --- Range ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "range_header, start, end",
    [
        ("bytes=0-0", 0, 0),  # the first byte
        ("bytes=-1", SIZE - 1, SIZE - 1),  # the last byte
        ("bytes=5-", 5, SIZE - 1),
        ("bytes=1000-1999", 1000, 1999),
        (f"bytes={SIZE - 10}-{SIZE + 1000}", SIZE - 10, SIZE - 1),  # the end is clamped
        (f"bytes=-{SIZE * 2}", 0, SIZE - 1),  # a suffix longer than the file
        ("bytes=0-", 0, SIZE - 1),
        ("BYTES=7-8", 7, 8),  # range units are case-insensitive
    ],
)
def test_single_range(
    server: TusServer, client: httpx.Client, png_url: str, range_header: str, start: int, end: int
) -> None:
    response = client.get(png_url, headers={"Range": range_header})
    assert response.status_code == 206
    assert response.content == DATA[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["content-type"] == "image/png"
    assert response.headers["etag"] == stored_etag(server, png_url)
    assert response.headers["tus-resumable"] == "1.0.0"


@pytest.mark.parametrize("range_header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"])
def test_unsatisfiable_range_is_416(client: httpx.Client, png_url: str, range_header: str) -> None:
    response = client.get(png_url, headers={"Range": range_header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.content == b""


def test_416_carries_the_tus_headers(client: httpx.Client, png_url: str) -> None:
    # Wire policy: every response carries Tus-Resumable (and nosniff).
    response = client.get(png_url, headers={"Range": f"bytes={SIZE}-"})
    assert response.status_code == 416
    assert response.headers.get("tus-resumable") == "1.0.0"
    assert response.headers.get("x-content-type-options") == "nosniff"


def test_range_with_an_unknown_unit_is_ignored(client: httpx.Client, png_url: str) -> None:
    # RFC 9110 section 14.2: an origin server MUST ignore a Range with a unit it does not understand.
    response = client.get(png_url, headers={"Range": "items=0-1"})
    assert response.status_code == 200
    assert response.content == DATA


def test_partly_satisfiable_range_set_serves_what_it_can(client: httpx.Client, png_url: str) -> None:
    # RFC 9110 section 14.1.1: a range set is satisfiable if any of its ranges is.
    response = client.get(png_url, headers={"Range": f"bytes=0-9, {SIZE + 5}-{SIZE + 9}"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 0-9/{SIZE}"
    assert response.content == DATA[:10]


@pytest.mark.parametrize("range_header", ["bytes=x-y", "bytes=5-2", "bytes=", "garbage"])
def test_malformed_range_is_ignored_or_refused_never_a_500(
    client: httpx.Client, png_url: str, range_header: str
) -> None:
    # RFC 9110 section 14.2: a server MAY ignore or reject an invalid ranges-specifier.
    response = client.get(png_url, headers={"Range": range_header})
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert response.content == DATA


def test_zero_length_upload(server: TusServer, client: httpx.Client) -> None:
    url = upload(client, server, b"", filename=b"empty.txt", filetype=b"text/plain")
    response = client.get(url, headers=WANT_SHA256)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert response.headers["etag"] == stored_etag(server, url)
    assert response.headers["repr-digest"] == sha256_field(b"")
    for range_header in ("bytes=0-", "bytes=0-0", "bytes=-1"):
        ranged = client.get(url, headers={"Range": range_header})
        assert ranged.status_code == 416, range_header
        assert ranged.headers["content-range"] == "bytes */0"


def multipart_parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    media, _, parameters = response.headers["content-type"].partition(";")
    assert media.strip() == "multipart/byteranges"
    boundary = parameters.strip().removeprefix("boundary=").strip('"')
    delimiter = b"--" + boundary.encode()
    body = response.content
    assert body.rstrip(b"\r\n").endswith(delimiter + b"--")
    parts = []
    for section in body.split(delimiter)[1:-1]:
        assert section.startswith(b"\r\n") and section.endswith(b"\r\n")
        head_bytes, data = section[2:-2].split(b"\r\n\r\n", 1)
        headers = {}
        for line in head_bytes.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, data))
    return parts


def test_multiple_ranges_are_multipart_byteranges(client: httpx.Client, png_url: str) -> None:
    response = client.get(png_url, headers={"Range": "bytes=0-9, 500-599, -5"})
    assert response.status_code == 206
    assert "content-range" not in response.headers
    assert response.headers["content-length"] == str(len(response.content))
    parts = multipart_parts(response)
    expected = [(0, 9), (500, 599), (SIZE - 5, SIZE - 1)]
    assert len(parts) == len(expected)
    for (headers, data), (start, end) in zip(parts, expected, strict=True):
        assert headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
        assert headers["content-type"] == "image/png"
        assert data == DATA[start : end + 1]


# --- conditional requests ------------------------------------------------------------------------


def test_if_range_with_the_current_etag_serves_the_range(client: httpx.Client, png_url: str) -> None:
    current = client.get(png_url, headers={"Range": "bytes=0-0"}).headers["etag"]
    response = client.get(png_url, headers={"Range": "bytes=10-19", "If-Range": current})
    assert response.status_code == 206
    assert response.content == DATA[10:20]


@pytest.mark.parametrize("validator", [content_etag(b"old content"), content_etag(DATA), "W/{current}", '"nonsense"'])
def test_if_range_with_another_validator_serves_everything(
    server: TusServer, client: httpx.Client, png_url: str, validator: str
) -> None:
    # If-Range needs a strong match (RFC 9110 section 13.1.5); otherwise the whole file, 200.
    validator = validator.format(current=stored_etag(server, png_url))
    response = client.get(png_url, headers={"Range": "bytes=10-19", "If-Range": validator})
    assert response.status_code == 200
    assert response.content == DATA


def test_if_range_with_last_modified_serves_the_range(client: httpx.Client, png_url: str) -> None:
    modified = client.get(png_url, headers={"Range": "bytes=0-0"}).headers["last-modified"]
    response = client.get(png_url, headers={"Range": "bytes=10-19", "If-Range": modified})
    assert response.status_code == 206
    assert response.content == DATA[10:20]


@pytest.mark.parametrize("if_none_match", ["{current}", "W/{current}", '"other", {current}', "*"])
def test_if_none_match_matching_is_304(client: httpx.Client, png_url: str, if_none_match: str) -> None:
    current = client.get(png_url).headers["etag"]  # what a cache holds after a first GET
    response = client.get(png_url, headers={"If-None-Match": if_none_match.format(current=current)})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == current


@pytest.mark.parametrize("if_none_match", [content_etag(b"other"), content_etag(DATA), '"other", "more"'])
def test_if_none_match_not_matching_is_200(client: httpx.Client, png_url: str, if_none_match: str) -> None:
    response = client.get(png_url, headers={"If-None-Match": if_none_match})
    assert response.status_code == 200
    assert response.content == DATA


# --- memory: a 1 GiB download streams ------------------------------------------------------------


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM (Linux >= 4.0) so the upload's peak does not count; harmless if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def deterministic_blocks(total: int, block_size: int = MiB) -> Iterator[bytes]:
    base = random.Random(3).randbytes(block_size)
    for index, start in enumerate(range(0, total, block_size)):
        block = index.to_bytes(8, "big") + base[8:]
        yield block[: min(block_size, total - start)]


def test_one_gib_download_streams_in_bounded_memory(
    make_server: Callable[..., TusServer], client: httpx.Client
) -> None:
    server = make_server()
    size = 1 << 30
    url = create(client, server, size)
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for block in deterministic_blocks(size):
            sent.update(block)
            yield block

    headers = {
        **TUS,
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(size),
    }
    assert client.patch(url, content=body(), headers=headers).status_code == 204
    assert client.get(url, headers={"Range": "bytes=0-0"}).status_code == 206  # warm the download path
    pid = server.process.pid
    reset_peak_rss(pid)
    before = proc_status_kib(pid)
    received = hashlib.sha256()
    started = time.monotonic()
    # Nothing declared, so the sha-256 asked for is computed from the stored bytes now: in
    # bounded memory too.
    with client.stream("GET", url, headers=WANT_SHA256) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        assert response.headers["etag"] == stored_etag(server, url)
        assert response.headers["repr-digest"] == f"sha-256=:{b64(sent.digest())}:"
        total = 0
        for block in response.iter_bytes(MiB):
            received.update(block)
            total += len(block)
    after = proc_status_kib(pid)
    assert total == size
    assert received.hexdigest() == sent.hexdigest()
    growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    assert growth_mib < 50, f"server RSS grew by {growth_mib:.1f} MiB ({before} -> {after})"
    assert time.monotonic() - started < 120
    data_file(server, url).unlink()  # 1 GiB is too much to leave behind
