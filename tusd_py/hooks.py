"""tusd-compatible hooks: events, payloads, file hooks and HTTP hooks.

Payload (stdin of a file hook, body of an HTTP hook), as tusd sends it:

    {"Type": "pre-create",
     "Event": {"Upload": <FileInfo: ID, Size, SizeIsDeferred, Offset, MetaData, ...>,
               "HTTPRequest": {"Method", "URI", "RemoteAddr", "Header": {name: [values]}}}}

Response (stdout of a file hook, `application/json` body of an HTTP hook),
every field optional: `HTTPResponse` {StatusCode, Body, Header}, `RejectUpload`,
`RejectTermination`, `StopUpload`, `ChangeFileInfo` {ID, MetaData}, and ours,
`RejectAccess` for the `pre-access` hook.

pre-create, pre-finish, pre-terminate and pre-access block the request (a
failing blocking hook answers 500); post-* hooks run in the background and
their failures are only logged. File hooks run without a shell, with the
hooks directory as working directory and TUS_ID/TUS_SIZE/TUS_OFFSET set.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc

from . import info as info_codec
from .errors import TusError
from .info import UploadInfo

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("tusd_py")

# tusd's events, then ours.
TUSD_HOOK_TYPES = (
    "pre-create",
    "post-create",
    "post-receive",
    "pre-finish",
    "post-finish",
    "pre-terminate",
    "post-terminate",
)
HOOK_TYPES = (*TUSD_HOOK_TYPES, "pre-access")
# tusd's default; pre-finish, pre-terminate (and our pre-access) must be asked for.
DEFAULT_ENABLED = ("pre-create", "post-create", "post-receive", "post-terminate", "post-finish")


class HookError(Exception):
    """A hook could not be run, failed, or answered something unreadable."""


@dataclass(frozen=True)
class RequestInfo:
    """The part of the HTTP request a hook sees."""

    method: str
    uri: str
    remote_addr: str
    headers: Mapping[str, list[str]]


@dataclass(frozen=True)
class HTTPResponse:
    status: int = 0
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def merge_into(self, error: TusError) -> TusError:
        """The hook's response wins where it says something (tusd's MergeWith)."""
        merged = TusError(self.status or error.status, error.code, error.message, {**error.headers, **self.headers})
        if self.body:
            merged.custom_body = self.body.encode()
        return merged


@dataclass(frozen=True)
class HookResponse:
    http: HTTPResponse = HTTPResponse()
    reject_upload: bool = False
    reject_termination: bool = False
    reject_access: bool = False
    stop_upload: bool = False
    new_id: str = ""
    new_metadata: dict[str, str] | None = None
    new_storage: dict[str, str] | None = None

    @classmethod
    def parse(cls, raw: bytes) -> HookResponse:
        if not raw.strip():
            return cls()
        try:
            document = json.loads(raw)
            http = document.get("HTTPResponse") or {}
            changes = document.get("ChangeFileInfo") or {}
            metadata = changes.get("MetaData")
            storage = changes.get("Storage")
            return cls(
                http=HTTPResponse(
                    status=int(http.get("StatusCode") or 0),
                    body=str(http.get("Body") or ""),
                    headers={str(k): str(v) for k, v in (http.get("Header") or {}).items()},
                ),
                reject_upload=bool(document.get("RejectUpload")),
                reject_termination=bool(document.get("RejectTermination")),
                reject_access=bool(document.get("RejectAccess")),
                stop_upload=bool(document.get("StopUpload")),
                new_id=str(changes.get("ID") or ""),
                new_metadata=None if metadata is None else {str(k): str(v) for k, v in metadata.items()},
                new_storage=None if storage is None else {str(k): str(v) for k, v in storage.items()},
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise HookError(f"unreadable hook response: {exc}: {raw[:200]!r}") from None


def payload(hook_type: str, info: UploadInfo, request: RequestInfo) -> bytes:
    return json.dumps(
        {
            "Type": hook_type,
            "Event": {
                "Upload": info_codec.document(info),
                "HTTPRequest": {
                    "Method": request.method,
                    "URI": request.uri,
                    "RemoteAddr": request.remote_addr,
                    "Header": dict(request.headers),
                },
            },
        }
    ).encode()


class HookBackend(Protocol):
    async def invoke(self, hook_type: str, info: UploadInfo, body: bytes, request: RequestInfo) -> HookResponse: ...

    async def aclose(self) -> None:
        """Let go of what the backend holds open (connections), when the app stops."""
        ...


class FileHooks:
    """An executable named after the event in the hooks directory (a missing one is a no-op)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()

    async def aclose(self) -> None:
        """Nothing held open between hooks."""

    async def invoke(self, hook_type: str, info: UploadInfo, body: bytes, request: RequestInfo) -> HookResponse:
        executable = self.directory / hook_type
        if not executable.exists():
            return HookResponse()
        env = {
            **os.environ,
            "TUS_ID": info.id,
            "TUS_SIZE": str(info.size or 0),
            "TUS_OFFSET": str(info.offset),
        }
        try:
            process = await anyio.open_process([str(executable)], env=env, cwd=self.directory, stderr=None)
        except OSError as exc:
            raise HookError(f"cannot run {executable}: {exc}") from None
        async with process:
            stdin, stdout = process.stdin, process.stdout
            assert stdin is not None and stdout is not None

            async def feed() -> None:
                try:
                    await stdin.send(body)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass  # the hook exited without reading its stdin (tusd's examples do): fine
                finally:
                    await stdin.aclose()

            output = bytearray()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(feed)
                async for chunk in stdout:
                    output += chunk
            returncode = await process.wait()
        if returncode != 0:
            raise HookError(f"{hook_type} hook exited with {returncode}: {bytes(output[:200])!r}")
        return HookResponse.parse(bytes(output))


class HttpHooks:
    """POST of the payload to an endpoint, with tusd's retry, backoff, timeout and size limit."""

    def __init__(
        self,
        endpoint: str,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 15.0,
        size_limit: int = 5120,
        forward_headers: tuple[str, ...] = (),
    ) -> None:
        self.endpoint = endpoint
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.size_limit = size_limit
        self.forward_headers = forward_headers
        import httpx  # here: a server without HTTP hooks does not load it (~2 MiB)

        self._client = httpx.AsyncClient(timeout=timeout)
        self._transport_error = httpx.HTTPError

    async def invoke(self, hook_type: str, info: UploadInfo, body: bytes, request: RequestInfo) -> HookResponse:
        headers = {"Content-Type": "application/json"}
        lowered = {name.lower(): values for name, values in request.headers.items()}
        for name in self.forward_headers:
            if lowered.get(name.lower()):
                headers[name] = lowered[name.lower()][0]
        for attempt in range(self.retries + 1):
            if attempt:
                await anyio.sleep(self.backoff)
            try:
                response = await self._client.post(self.endpoint, content=body, headers=headers)
            except self._transport_error as exc:
                error = HookError(f"{hook_type} hook request failed: {exc}")
                continue
            if response.status_code >= 500:
                error = HookError(f"{hook_type} hook endpoint answered {response.status_code}")
                continue
            return self._read(hook_type, response)
        raise error

    def _read(self, hook_type: str, response: httpx.Response) -> HookResponse:
        if not 200 <= response.status_code < 300:
            raise HookError(f"{hook_type} hook endpoint answered {response.status_code}: {response.text[:200]}")
        if len(response.content) > self.size_limit:
            raise HookError(f"{hook_type} hook response exceeds {self.size_limit} bytes")
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HookError(f"{hook_type} hook response must be application/json, not {media_type!r}")
        return HookResponse.parse(response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


HookObserver = Callable[[str, bool], None]  # (hook type, failed) -> None, for metrics


class Hooks:
    """Runs the enabled hooks: blocking ones inline, post-* ones in the background."""

    def __init__(
        self,
        backend: HookBackend | None,
        enabled: tuple[str, ...] = DEFAULT_ENABLED,
        observer: HookObserver | None = None,
    ) -> None:
        self.backend = backend
        self.enabled = frozenset(enabled) if backend is not None else frozenset()
        self.observer = observer
        self._background: anyio.abc.TaskGroup | None = None

    def wants(self, hook_type: str) -> bool:
        return hook_type in self.enabled

    async def run(self, hook_type: str, info: UploadInfo, request: RequestInfo) -> HookResponse:
        """A blocking hook; a hook that fails fails the request (500)."""
        if not self.wants(hook_type):
            return HookResponse()
        try:
            return await self._invoke(hook_type, info, request)
        except HookError as exc:
            raise TusError(500, "ERR_HOOK_FAILED", f"{hook_type} hook failed") from exc

    def notify(
        self,
        hook_type: str,
        info: UploadInfo,
        request: RequestInfo,
        on_response: Callable[[HookResponse], None] | None = None,
    ) -> None:
        """A post-* hook, in the background; it never delays or fails the request."""
        if not self.wants(hook_type) or self._background is None:
            return
        self._background.start_soon(self._notify, hook_type, info, request, on_response)

    async def _notify(
        self,
        hook_type: str,
        info: UploadInfo,
        request: RequestInfo,
        on_response: Callable[[HookResponse], None] | None,
    ) -> None:
        try:
            response = await self._invoke(hook_type, info, request)
        except Exception:  # noqa: BLE001 - a background hook must never take the others down
            return
        if on_response is not None:
            on_response(response)

    async def _invoke(self, hook_type: str, info: UploadInfo, request: RequestInfo) -> HookResponse:
        assert self.backend is not None
        try:
            response = await self.backend.invoke(hook_type, info, payload(hook_type, info, request), request)
        except Exception as exc:
            log.error("hook %s for upload %s failed: %s", hook_type, info.id, exc)
            if self.observer:
                self.observer(hook_type, True)
            raise exc if isinstance(exc, HookError) else HookError(str(exc)) from exc
        if self.observer:
            self.observer(hook_type, False)
        return response

    async def serve(self) -> None:
        """Hold the task group background hooks run in, for the app's lifetime."""
        try:
            async with anyio.create_task_group() as background:
                self._background = background
                try:
                    await anyio.sleep_forever()
                finally:
                    self._background = None
        finally:
            if self.backend is not None:
                with anyio.CancelScope(shield=True):
                    await self.backend.aclose()
