"""Download a finished tus upload, resuming an interrupted download, and verify it.

    python client_demo/download.py URL [-o FILE] [--limit-rate BYTES_PER_SECOND]

While downloading, FILE.etag holds the server's ETag. If FILE already exists with
its FILE.etag, the download resumes with `Range: bytes=<size>-` and
`If-Range: <etag>`: the server answers 206 and we append, or 200 (the file
changed) and we start again. At the end the file's sha-256 is checked against
the server's `Repr-Digest` (RFC 9530). Exit status 0 when verified, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

CHUNK = 64 * 1024


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """A one-line textual progress bar on stderr, redrawn when the shown text changes."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.shown = ""

    def update(self, done: int) -> None:
        if self.total:
            filled = 30 * done // self.total
            bar = "#" * filled + "-" * (30 - filled)
            text = f"[{bar}] {100 * done // self.total:3d}% {done / 2**20:.1f}/{self.total / 2**20:.1f} MiB"
        else:
            text = f"{done / 2**20:.1f} MiB"
        if text != self.shown:
            sys.stderr.write("\r" + text)
            sys.stderr.flush()
            self.shown = text


def sha256_of(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.digest()


def repr_digest_sha256(header: str | None) -> bytes | None:
    """The sha-256 member of a Repr-Digest header (`sha-256=:<base64>:`), if any."""
    for member in (header or "").split(","):
        name, _, value = member.strip().partition("=")
        value = value.split(";", 1)[0].strip()
        if name == "sha-256" and len(value) > 2 and value[0] == value[-1] == ":":
            try:
                return base64.b64decode(value[1:-1], validate=True)
            except ValueError:
                return None
    return None


def request_headers(target: Path, etag_file: Path) -> dict[str, str]:
    headers = {"Want-Repr-Digest": "sha-256=10"}
    if target.exists() and target.stat().st_size > 0 and etag_file.exists():
        size = target.stat().st_size
        say(f"resuming at {size} bytes")
        headers |= {"Range": f"bytes={size}-", "If-Range": etag_file.read_text().strip()}
    elif target.exists():
        say(f"{target} exists without a saved ETag: downloading it again")
    return headers


def download(client: httpx.Client, url: str, target: Path, limit_rate: float | None) -> str | None:
    """Fetch `url` into `target`; returns the server's Repr-Digest header."""
    etag_file = target.with_name(target.name + ".etag")
    headers = request_headers(target, etag_file)
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416:  # our file is not a prefix of theirs any more
            say("the server cannot resume from here: starting again")
            target.unlink()
            return download(client, url, target, limit_rate)
        if response.status_code not in (200, 206):
            response.read()
            raise RuntimeError(f"server answered {response.status_code}: {response.text.strip()}")
        if response.status_code == 200 and "Range" in headers:
            say("the file changed on the server: starting again")
        if etag := response.headers.get("etag"):
            etag_file.write_text(etag)
        done = target.stat().st_size if response.status_code == 206 else 0
        total = int(response.headers["content-length"]) + done if "content-length" in response.headers else None
        bar, started, received = Progress(total), time.monotonic(), 0
        with open(target, "ab" if response.status_code == 206 else "wb") as out:
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)
                done += len(chunk)
                received += len(chunk)
                bar.update(done)
                if limit_rate:  # sleep until we are back under the rate
                    time.sleep(max(0.0, received / limit_rate - (time.monotonic() - started)))
        sys.stderr.write("\n")
        repr_digest: str | None = response.headers.get("repr-digest")
        return repr_digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: the last part of the URL)")
    parser.add_argument("--limit-rate", type=float, help="at most this many bytes per second")
    args = parser.parse_args(argv)
    target: Path = args.output or Path(urlsplit(args.url).path.rstrip("/").rsplit("/", 1)[-1] or "download")
    try:
        with httpx.Client(timeout=30.0) as client:
            repr_digest = download(client, args.url, target, args.limit_rate)
    except (httpx.HTTPError, RuntimeError, OSError) as error:
        say(f"download failed: {error}")
        return 1
    expected = repr_digest_sha256(repr_digest)
    if expected is None:
        say("the server sent no sha-256 Repr-Digest: cannot verify the download")
        return 1
    actual = sha256_of(target)
    target.with_name(target.name + ".etag").unlink(missing_ok=True)  # nothing left to resume
    if actual != expected:
        say(f"checksum mismatch: {target} has sha-256 {actual.hex()}, the server says {expected.hex()}")
        return 1
    say(f"verified: {target} ({target.stat().st_size} bytes, sha-256 {actual.hex()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
