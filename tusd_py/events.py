"""Upload lifecycle events: the hooks they run and the metrics they count.

The handler calls these at the points tusd does; each method knows which
hook is blocking (and may change or refuse what happens) and which only
notifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from starlette.requests import Request

from .errors import TusError
from .hooks import HookResponse, Hooks, HTTPResponse, RequestInfo
from .info import UploadInfo
from .metrics import Metrics
from .protocol import is_valid_upload_id

HookResponseCallback = Callable[[HookResponse], None]


class _CanonicalHeaders(Mapping[str, list[str]]):
    """Request headers as tusd's payload carries them (Go's canonical names, lists of
    values), built only if a hook actually runs."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._built: dict[str, list[str]] | None = None

    def _headers(self) -> dict[str, list[str]]:
        if self._built is None:
            self._built = {}
            for name, value in self._raw:
                canonical = "-".join(part.capitalize() for part in name.decode("latin-1").split("-"))
                self._built.setdefault(canonical, []).append(value.decode("latin-1"))
        return self._built

    def __getitem__(self, key: str) -> list[str]:
        return self._headers()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())


def request_info(request: Request) -> RequestInfo:
    scope = request.scope
    query = scope.get("query_string", b"").decode("latin-1")
    client = scope.get("client")
    return RequestInfo(
        method=scope["method"],
        uri=scope["path"] + (f"?{query}" if query else ""),
        remote_addr=f"{client[0]}:{client[1]}" if client else "",
        headers=_CanonicalHeaders(scope["headers"]),
    )


class Events:
    def __init__(self, hooks: Hooks, metrics: Metrics) -> None:
        self.hooks = hooks
        self.metrics = metrics

    async def creating(self, info: UploadInfo, request: RequestInfo) -> tuple[UploadInfo, HTTPResponse]:
        """pre-create: may refuse the upload, or change its id and metadata."""
        response = await self.hooks.run("pre-create", info, request)
        if response.reject_upload:
            raise response.http.merge_into(
                TusError(400, "ERR_UPLOAD_REJECTED", "upload creation has been rejected by server")
            )
        if response.new_id:
            if not is_valid_upload_id(response.new_id):
                raise TusError(500, "ERR_INVALID_UPLOAD_ID", "pre-create hook returned an invalid upload id")
            info = replace(info, id=response.new_id)
        if response.new_metadata is not None:
            info = replace(info, metadata=response.new_metadata)
        if response.new_storage is not None:
            info = replace(info, storage=response.new_storage)  # the store applies what it supports
        return info, response.http

    def created(self, info: UploadInfo, request: RequestInfo) -> None:
        self.metrics.uploads_created.inc()
        self.hooks.notify("post-create", info, request)

    def received(self, info: UploadInfo, request: RequestInfo, on_response: HookResponseCallback | None = None) -> None:
        self.hooks.notify("post-receive", info, request, on_response)

    async def finished(self, info: UploadInfo, request: RequestInfo) -> HTTPResponse:
        """pre-finish (its response shapes the completing request's), then post-finish."""
        response = await self.hooks.run("pre-finish", info, request)
        self.finished_now(info, request)
        return response.http

    def finished_now(self, info: UploadInfo, request: RequestInfo) -> None:
        """post-finish and the count, without pre-finish (when no such hook runs)."""
        self.metrics.uploads_finished.inc()
        self.hooks.notify("post-finish", info, request)

    async def accessing(self, info: UploadInfo, request: RequestInfo) -> None:
        """pre-access (ours): may refuse HEAD, PATCH, GET or DELETE of an existing upload."""
        response = await self.hooks.run("pre-access", info, request)
        if response.reject_access:
            raise response.http.merge_into(TusError(403, "ERR_ACCESS_DENIED", "access to this upload was denied"))

    async def terminating(self, info: UploadInfo, request: RequestInfo) -> HTTPResponse:
        response = await self.hooks.run("pre-terminate", info, request)
        if response.reject_termination:
            raise response.http.merge_into(
                TusError(400, "ERR_UPLOAD_TERMINATION_REJECTED", "upload termination has been rejected by server")
            )
        return response.http

    def terminated(self, info: UploadInfo, request: RequestInfo) -> None:
        self.metrics.uploads_terminated.inc()
        self.hooks.notify("post-terminate", info, request)
