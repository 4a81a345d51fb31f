"""One log line per request, with the client's X-Request-ID.

Pure ASGI: it only watches the response start, so bodies stream untouched.
The fields travel on the log record (`record.fields`); `log_format.py`
renders them as `key=value` text or as JSON.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tusd_py.requests")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            request_id = ""
            for name, value in scope["headers"]:  # cheaper than building a Headers per request
                if name == b"x-request-id":
                    request_id = value.decode("latin-1")
                    break
            fields = {
                "event": "RequestCompleted",
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                # tusd logs the request id truncated to 36 characters.
                "request_id": request_id[:36],
            }
            log.info("RequestCompleted", extra={"fields": fields})
