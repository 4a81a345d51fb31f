"""The IETF "Resumable Uploads for HTTP" draft beside tus 1.0 (not yet implemented)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from .errors import TusError

if TYPE_CHECKING:
    from .handler import TusHandler


class IetfHandler:
    def __init__(self, tus: TusHandler) -> None:
        self.tus = tus

    async def handle(self, request: Request, upload_id: str) -> Response:
        raise TusError(501, "ERR_NOT_IMPLEMENTED", "the IETF resumable-upload draft is not implemented yet")
