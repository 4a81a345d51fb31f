"""X-HTTP-Method-Override as pure ASGI middleware.

tus core: when the header is present it MUST be taken as the request's method
and the real method ignored (clients use it where PATCH or DELETE cannot be
sent, e.g. tus-java-client on desktop JREs). A preflight OPTIONS is left alone
so CORS keeps working.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class MethodOverrideMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS":
            for name, value in scope["headers"]:
                if name == b"x-http-method-override":
                    method = value.decode("latin-1").strip().upper()
                    if method:
                        scope = {**scope, "method": method}
                    break
        await self.app(scope, receive, send)
