"""S3-compatible object storage, mapped onto S3 the way tusd's s3store does.

    <prefix><id>.info   tusd FileInfo JSON; Storage holds Bucket, Key and the multipart upload's id
    <prefix><id>        a multipart upload while bytes arrive, one object once the upload is complete
    <prefix><id>.part   bytes below the minimum part size, waiting for the next request

The offset is never stored: it is the size of the upload's parts 1..n (listed
with ListParts, up to the first gap) plus the size of `<id>.part`, so it can
not drift from what S3 holds. A `.part` records the number of the part it will
open (`x-amz-meta-next-part`); once that part exists, the `.part` was already
folded into it and is ignored and removed, so a crash between the two never
counts bytes twice.

A request's body is cut into parts in temporary files (memory stays flat
whatever the part size) and each full part is uploaded while the body is still
arriving: at most `max_buffered_parts` wait per upload and
`concurrent_part_uploads` upload at once per process. Before the client hears
an offset, every part of its request is uploaded and the tail is stored as
`.part`. A checksummed request spools its body and uploads nothing until the
checksum matched: S3 can not take a part back.

Only standard calls are used (multipart create/upload/copy/list/complete/abort
and object put/get/head/delete), so AWS S3, MinIO, Ceph RGW and R2 all work.
boto3 is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from .. import info as info_codec
from ..checksum import Hasher, new_hasher
from ..info import UploadInfo
from ..protocol import is_valid_upload_id
from .base import StoredBytes, UploadExists, UploadNotFound
from .s3_layout import (
    MAX_PARTS,
    NEXT_PART_METADATA,
    KeysSeen,
    Listing,
    Part,
    Pending,
    S3Error,
    S3Settings,
    contiguous,
    error_code,
    is_missing,
)
from .s3_writer import PartWriter

log = logging.getLogger("tusd_py")

READ_BLOCK = 1 << 20
LISTING_CACHE = 256
KNOWN_IDS = 10_000


def make_client(settings: S3Settings) -> Any:
    """A boto3 S3 client; credentials and region from the usual AWS environment."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

    config = BotoConfig(
        max_pool_connections=settings.concurrent_part_uploads + 16,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        # A custom endpoint (MinIO, Ceph, moto) is addressed by path, as tusd does.
        s3={"addressing_style": "path"} if settings.endpoint else {},
        # Checksums only where S3 requires them: SigV4 already covers the bytes.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", endpoint_url=settings.endpoint or None, region_name=region, config=config)


def check_bucket(settings: S3Settings) -> None:
    """At start-up: the bucket answers with these credentials (raises RuntimeError saying why not)."""
    client = make_client(settings)
    try:
        client.head_bucket(Bucket=settings.bucket)
    except Exception as error:
        code = error_code(error)
        reason = "no such bucket" if code in ("404", "NoSuchBucket") else code or error
        where = settings.endpoint or "AWS"
        raise RuntimeError(f"cannot use S3 bucket {settings.bucket!r} at {where}: {reason}") from None
    finally:
        client.close()


class S3Store:
    def __init__(self, settings: S3Settings, client: Any = None) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.client = client if client is not None else make_client(settings)
        self._calls = anyio.CapacityLimiter(settings.concurrent_part_uploads + 16)
        self._part_uploads = anyio.Semaphore(settings.concurrent_part_uploads)
        # What get_info saw for a lock holder, handed to the writer that follows (bounded:
        # a HEAD leaves its listing behind; a stale or missing one only costs a new listing).
        self._listings: OrderedDict[str, Listing] = OrderedDict()
        # Ids seen to exist, so most requests skip one HeadObject. A stale entry (terminated
        # by another instance) is harmless: the lock holder's info read then finds it gone.
        self._known: OrderedDict[str, None] = OrderedDict()

    # --- keys and calls ----------------------------------------------------------

    def key(self, upload_id: str) -> str:
        return f"{self.settings.object_prefix}{upload_id}"

    async def _call(self, operation: str, **params: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(
                partial(getattr(self.client, operation), Bucket=self.bucket, **params), limiter=self._calls
            )
        except Exception as error:
            if is_missing(error):
                raise
            raise S3Error(errno.EIO, f"S3 {operation} failed: {error_code(error) or error}") from error

    async def _call_if_present(self, operation: str, **params: Any) -> Any | None:
        """`_call`, answering None when the key, object or multipart upload does not exist."""
        try:
            return await self._call(operation, **params)
        except Exception as error:
            if is_missing(error):
                return None
            raise

    async def _delete(self, key: str) -> None:
        await self._call_if_present("delete_object", Key=key)

    def _storage_fields(self, upload_id: str, multipart_id: str) -> dict[str, str]:
        return {"Type": "s3store", "Bucket": self.bucket, "Key": self.key(upload_id), "MultipartUpload": multipart_id}

    # --- info ----------------------------------------------------------------------

    async def _put_info(self, info: UploadInfo, *, new: bool = False) -> None:
        params: dict[str, Any] = {"Key": self.key(info.id) + ".info", "Body": info_codec.encode(info)}
        if new:
            params["IfNoneMatch"] = "*"  # two creations of one id: the second fails
        try:
            await self._call("put_object", ContentType="application/json", **params)
        except S3Error as error:
            if new and error_code(error.__cause__ or error) in ("PreconditionFailed", "412"):
                raise UploadExists(info.id) from None
            raise

    async def _read_info(self, upload_id: str) -> tuple[UploadInfo, float]:
        response = await self._call_if_present("get_object", Key=self.key(upload_id) + ".info")
        if response is None:
            raise UploadNotFound(upload_id)
        with response["Body"] as body:
            raw = await anyio.to_thread.run_sync(body.read, limiter=self._calls)
        try:
            info = info_codec.decode(raw)
        except ValueError as error:
            raise UploadNotFound(upload_id) from error
        self._remember(upload_id)
        return replace(info, id=upload_id), response["LastModified"].timestamp()

    def _remember(self, upload_id: str) -> None:
        self._known[upload_id] = None
        self._known.move_to_end(upload_id)
        if len(self._known) > KNOWN_IDS:
            self._known.popitem(last=False)

    async def exists(self, upload_id: str) -> bool:
        if upload_id in self._known:
            return True
        return await self._info_exists(upload_id)

    async def _info_exists(self, upload_id: str) -> bool:
        return await self._call_if_present("head_object", Key=self.key(upload_id) + ".info") is not None

    async def _list(self, info: UploadInfo) -> Listing | None:
        """The upload's parts and `.part`, or None when its multipart upload is gone (completed)."""
        multipart_id = info.storage.get("MultipartUpload", "")
        if not multipart_id:
            return None
        parts: list[Part] = []
        pending: Pending | None = None
        gone = False

        async def list_parts() -> None:
            nonlocal gone
            marker = 0
            for _ in range(MAX_PARTS // 1000 + 1):  # bounded: pages of 1,000 parts
                page = await self._call_if_present(
                    "list_parts", Key=self.key(info.id), UploadId=multipart_id, PartNumberMarker=marker
                )
                if page is None:
                    gone = True
                    return
                for item in page.get("Parts", []):
                    modified = item["LastModified"].timestamp() if "LastModified" in item else 0.0
                    parts.append(Part(item["PartNumber"], item["Size"], item["ETag"], modified))
                if not page.get("IsTruncated"):
                    return
                marker = int(page["NextPartNumberMarker"])

        async def head_pending() -> None:
            nonlocal pending
            head = await self._call_if_present("head_object", Key=self.key(info.id) + ".part")
            if head is None:
                return
            next_part = int(head.get("Metadata", {}).get(NEXT_PART_METADATA, "1"))
            pending = Pending(head["ContentLength"], next_part, head["LastModified"].timestamp())

        async with anyio.create_task_group() as calls:
            calls.start_soon(list_parts)
            calls.start_soon(head_pending)
        if gone:
            return None
        kept = contiguous(parts)
        if pending is not None and pending.next_part <= len(kept):
            pending = None  # already folded into the part it opened (see the module docstring)
        return Listing(kept, pending)

    async def get_info(self, upload_id: str, *, settle: bool = True) -> UploadInfo:
        info, info_modified = await self._read_info(upload_id)
        listing = None if info.finished else await self._list(info)
        if listing is None:
            # Complete: the multipart upload became the object.
            stored = await self.stored_bytes(upload_id)
            return replace(info, offset=stored.size, updated_at=stored.modified)
        modified = max([info_modified, *(p.modified for p in listing.parts)])
        if listing.pending is not None:
            modified = max(modified, listing.pending.modified)
        info = replace(info, offset=listing.size, updated_at=modified)
        if settle:
            if info.is_complete:  # the last part went up but a crash came before CompleteMultipartUpload
                await self._complete(info, listing.parts, listing.pending)
                return info
            self._listings[upload_id] = listing
            if len(self._listings) > LISTING_CACHE:
                self._listings.popitem(last=False)
        return info

    async def create(self, info: UploadInfo) -> UploadInfo:
        if await self._info_exists(info.id):
            raise UploadExists(info.id)
        key = self.key(info.id)
        multipart_id = ""
        if info.size == 0:
            await self._call("put_object", Key=key, Body=b"")  # nothing will ever arrive
        else:
            multipart_id = await self._new_multipart(info)
        info = replace(info, storage=self._storage_fields(info.id, multipart_id), updated_at=time.time())
        try:
            await self._put_info(info, new=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard_bytes(info)
            raise
        self._remember(info.id)
        return info

    async def _new_multipart(self, info: UploadInfo) -> str:
        params: dict[str, Any] = {}
        filetype = info.metadata.get("filetype", "")
        if filetype.isascii() and filetype.isprintable() and "/" in filetype and len(filetype) < 256:
            params["ContentType"] = filetype  # for whoever reads the bucket directly
        created = await self._call("create_multipart_upload", Key=self.key(info.id), **params)
        return str(created["UploadId"])

    async def update_info(self, info: UploadInfo) -> None:
        await self._put_info(info)
        if info.is_complete and not info.finished:
            # A length declared at the offset already stored: the upload is complete now.
            listing = await self._list(info)
            if listing is not None:
                await self._complete(info, listing.parts, listing.pending)

    async def _complete(self, info: UploadInfo, parts: Sequence[Part], pending: Pending | None = None) -> None:
        multipart_id = info.storage["MultipartUpload"]
        key = self.key(info.id)
        if pending is not None and pending.size:  # the last bytes wait in `.part`: they become the last part
            number = len(parts) + 1
            copied = await self._call(
                "upload_part_copy",
                Key=key,
                UploadId=multipart_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": key + ".part"},
            )
            parts = [*parts, Part(number, pending.size, copied["CopyPartResult"]["ETag"])]
        if not parts:  # S3 completes nothing without a part
            uploaded = await self._call("upload_part", Key=key, UploadId=multipart_id, PartNumber=1, Body=b"")
            parts = [Part(1, 0, uploaded["ETag"])]
        manifest = {"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]}
        await self._call("complete_multipart_upload", Key=key, UploadId=multipart_id, MultipartUpload=manifest)
        await self._delete(key + ".part")
        self._listings.pop(info.id, None)

    async def _discard_bytes(self, info: UploadInfo) -> None:
        multipart_id = info.storage.get("MultipartUpload", "")
        key = self.key(info.id)
        if multipart_id:
            await self._call_if_present("abort_multipart_upload", Key=key, UploadId=multipart_id)
        await self._delete(key + ".part")
        await self._delete(key)
        self._listings.pop(info.id, None)

    async def reset(self, upload_id: str) -> None:
        info, _ = await self._read_info(upload_id)
        await self._discard_bytes(info)
        storage = self._storage_fields(upload_id, await self._new_multipart(info))
        await self._put_info(replace(info, offset=0, storage=storage, digests={}, finished=False))

    async def terminate(self, upload_id: str) -> None:
        try:
            info, _ = await self._read_info(upload_id)
        except UploadNotFound:
            info = UploadInfo(id=upload_id, size=None)  # half gone already: remove what is left
        # The info goes first: once it is gone the upload no longer exists.
        self._known.pop(upload_id, None)
        await self._delete(self.key(upload_id) + ".info")
        await self._discard_bytes(info)

    async def expiry_candidates(self, changed_before: float) -> AsyncIterator[str]:
        """One pass over the bucket's listing, without reading any upload: an upload is a
        candidate when its `.info` and `.part` are older than the cutoff and it has no
        completed object. (Its parts are not in the listing; the sweeper's get_info sees them.)"""
        prefix = self.settings.object_prefix
        # Keys come sorted, so an id's keys (`<id>`, `<id>.info`, `<id>.part`) arrive close
        # together: an id is judged once the listing has passed `<id>.part`.
        seen: OrderedDict[str, KeysSeen] = OrderedDict()
        token: dict[str, str] = {}
        while True:
            page = await self._call("list_objects_v2", Prefix=prefix, **token)
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                while seen and next(iter(seen)) + ".part" < name:
                    upload_id, keys = seen.popitem(last=False)
                    if keys.expired(changed_before):
                        yield upload_id
                upload_id, _, suffix = name.partition(".")
                if is_valid_upload_id(upload_id) and suffix in ("", "info", "part"):
                    seen.setdefault(upload_id, KeysSeen()).record(suffix, item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        for upload_id, keys in seen.items():
            if keys.expired(changed_before):
                yield upload_id

    # --- reading -------------------------------------------------------------------------

    async def _read_object(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of an object, in blocks (a ranged GetObject, streamed)."""
        if end <= start:
            return
        response = await self._call("get_object", Key=key, Range=f"bytes={start}-{end - 1}")
        body = response["Body"]
        try:
            while block := await self._read_body(body):
                yield block
        finally:
            body.close()

    async def _read_body(self, body: Any) -> bytes:
        try:
            return await anyio.to_thread.run_sync(body.read, READ_BLOCK, limiter=self._calls)
        except Exception as error:  # the connection broke mid-object
            raise S3Error(errno.EIO, f"S3 read failed: {error}") from error

    async def stored_bytes(self, upload_id: str) -> StoredBytes:
        key = self.key(upload_id)
        head = await self._call_if_present("head_object", Key=key)
        if head is None:
            raise UploadNotFound(upload_id)
        return StoredBytes(
            size=head["ContentLength"],
            modified=head["LastModified"].timestamp(),
            read_range=partial(self._read_object, key),
        )

    async def read_digests(self, upload_id: str, algorithms: Sequence[str]) -> dict[str, bytes]:
        stored = await self.stored_bytes(upload_id)
        hashers = {name: new_hasher(name) for name in algorithms}
        async for block in self._read_object(self.key(upload_id), 0, stored.size):
            for hasher in hashers.values():
                hasher.update(block)
        return {name: hasher.digest() for name, hasher in hashers.items()}

    # --- concatenation -----------------------------------------------------------------

    async def concatenate(
        self, final: UploadInfo, partials: Sequence[UploadInfo], observers: Sequence[Hasher] = ()
    ) -> UploadInfo:
        if await self._info_exists(final.id):
            raise UploadExists(final.id)
        final = replace(final, storage=self._storage_fields(final.id, await self._new_multipart(final)))
        sources = [p for p in partials if p.size]
        try:
            # S3 copies whole parts only when every part but the last reaches the minimum size;
            # otherwise the bytes go through this process.
            if all(p.size is not None and p.size >= self.settings.min_part_size for p in sources[:-1]):
                parts = await self._copy_parts(final, sources)
                if observers:  # declared digests still need the bytes; S3 copied them without us
                    for partial_info in sources:
                        async for block in self._read_object(self.key(partial_info.id), 0, partial_info.size or 0):
                            for observer in observers:
                                observer.update(block)
                await self._complete(final.with_offset(final.size or 0), parts)
            else:
                async with self.writer(final, transactional=False, observers=observers, fresh=True) as writer:
                    for partial_info in sources:
                        async for block in self._read_object(self.key(partial_info.id), 0, partial_info.size or 0):
                            await writer.append(block)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard_bytes(final)
            raise
        final = replace(final, offset=final.size or 0, updated_at=time.time())
        await self._put_info(final, new=True)  # last: no final upload exists with short bytes
        return final

    async def _copy_parts(self, final: UploadInfo, sources: Sequence[UploadInfo]) -> list[Part]:
        parts: list[Part] = []

        async def copy(number: int, source: UploadInfo) -> None:
            async with self._part_uploads:
                copied = await self._call(
                    "upload_part_copy",
                    Key=self.key(final.id),
                    UploadId=final.storage["MultipartUpload"],
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": self.key(source.id)},
                )
            parts.append(Part(number, source.size or 0, copied["CopyPartResult"]["ETag"]))

        async with anyio.create_task_group() as copies:
            for number, source in enumerate(sources, start=1):
                copies.start_soon(copy, number, source)
        return sorted(parts, key=lambda p: p.number)

    # --- writing -----------------------------------------------------------------------

    @asynccontextmanager
    async def writer(
        self, info: UploadInfo, *, transactional: bool, observers: Sequence[Hasher] = (), fresh: bool = False
    ) -> AsyncIterator[PartWriter]:
        listing = self._listings.pop(info.id, None)
        if fresh or info.is_complete:  # nothing stored yet, or nothing more to store
            listing = Listing((), None)
        elif listing is None or listing.size != info.offset:
            listing = await self._list(info)
            if listing is None or listing.size != info.offset:
                raise S3Error(errno.EIO, f"upload {info.id} changed in S3 while it was locked")
        writer = PartWriter(self, info, listing, transactional, observers)
        try:
            async with anyio.create_task_group() as uploads:  # part uploads; they never raise
                writer.uploads = uploads
                try:
                    yield writer
                finally:
                    # Runs even when the request was cancelled: everything the client may have
                    # been told is stored before the lock is released.
                    with anyio.CancelScope(shield=True):
                        await writer.close()
        except BaseExceptionGroup as group:  # only ever the request's own error: pass it on as itself
            raise group.exceptions[0] from None
