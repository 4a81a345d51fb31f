"""Upload files to a tus server with tuspy, resuming interrupted uploads.

    python client_demo/upload.py FILE... [--endpoint URL] [--chunk-size N] [--checksum] [--state PATH]

Each file's upload URL is remembered (tuspy's FileStorage, keyed by the
file's fingerprint and the endpoint), so running the same command again after
an interruption continues where the server's offset says. `--checksum` adds
`Upload-Checksum` to every request and declares the whole file's sha256 in
the metadata (`checksum: sha256 <hex>`), which the server verifies when the
upload completes. Progress goes to stderr, each upload URL to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import IO

from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.fingerprint.fingerprint import Fingerprint
from tusclient.storage.filestorage import FileStorage
from tusclient.uploader.uploader import Uploader

DEFAULT_ENDPOINT = "http://127.0.0.1:8080/files/"
DEFAULT_STATE = Path.home() / ".cache" / "tusd-py-demo" / "urls.json"
BAR_WIDTH = 30


class EndpointFingerprint(Fingerprint):
    """tuspy's fingerprint (size + md5 of the first 64 KiB), per server."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def get_fingerprint(self, fs: IO[bytes]) -> str:
        return f"{self.endpoint} {super().get_fingerprint(fs)}"


def sha256_hex(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def show_progress(name: str, offset: int, size: int) -> None:
    done = offset / size if size else 1.0
    bar = "#" * int(done * BAR_WIDTH)
    print(f"\r{name} [{bar:<{BAR_WIDTH}}] {done:6.1%} {offset}/{size} bytes", end="", file=sys.stderr, flush=True)


def make_uploader(client: TusClient, path: Path, storage: FileStorage, args: argparse.Namespace) -> Uploader:
    metadata = {"filename": path.name}
    if args.checksum:
        metadata["checksum"] = f"sha256 {sha256_hex(path)}"
    fingerprinter = EndpointFingerprint(args.endpoint)

    def new_uploader() -> Uploader:
        # With a stored URL for this file, tuspy asks the server for its offset (HEAD).
        return client.uploader(
            file_path=str(path),
            chunk_size=args.chunk_size,
            metadata=metadata,
            upload_checksum=args.checksum,
            store_url=True,
            url_storage=storage,
            fingerprinter=fingerprinter,
        )

    try:
        return new_uploader()
    except TusCommunicationError as error:
        if error.status_code is None or not 400 <= error.status_code < 500:
            raise  # the server is unreachable or failing: keep the URL for the next run
        # The stored upload is gone (expired, deleted): start afresh.
        with path.open("rb") as stream:
            storage.remove_item(fingerprinter.get_fingerprint(stream))
        print(f"{path.name}: the stored upload is gone ({error.status_code}), starting over", file=sys.stderr)
        return new_uploader()


def upload(client: TusClient, path: Path, storage: FileStorage, args: argparse.Namespace) -> str:
    uploader = make_uploader(client, path, storage, args)
    size = uploader.get_file_size()
    if uploader.url is not None and uploader.offset >= size:
        print(f"{path.name}: already uploaded to {uploader.url}", file=sys.stderr)
        return uploader.url
    if uploader.url is not None:
        print(f"{path.name}: resuming {uploader.url} at offset {uploader.offset}", file=sys.stderr)
    else:
        uploader.set_url(uploader.create_url())  # stored at once, so an interrupted run can resume
    show_progress(path.name, uploader.offset, size)
    while uploader.offset < size:
        uploader.upload_chunk()
        show_progress(path.name, uploader.offset, size)
    print(file=sys.stderr)
    assert uploader.url is not None
    return uploader.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"creation URL (default {DEFAULT_ENDPOINT})")
    parser.add_argument("--chunk-size", type=int, default=4 << 20, help="bytes per PATCH (default 4 MiB)")
    parser.add_argument("--checksum", action="store_true", help="per-request and whole-file sha256 checksums")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"resume state (default {DEFAULT_STATE})")
    args = parser.parse_args(argv)

    args.state.parent.mkdir(parents=True, exist_ok=True)
    storage = FileStorage(str(args.state))
    client = TusClient(args.endpoint)
    failed = False
    try:
        for path in args.files:
            try:
                print(upload(client, path, storage, args), flush=True)
            except TusCommunicationError as error:  # TusUploadFailed too
                detail = f" ({error.status_code}: {error.response_content!r})" if error.status_code else ""
                print(f"\n{path}: upload failed: {error}{detail}", file=sys.stderr)
                failed = True
            except (OSError, ValueError) as error:
                print(f"{path}: {error}", file=sys.stderr)
                failed = True
    finally:
        storage.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
