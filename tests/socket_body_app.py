"""A minimal ASGI app that reads request bodies with tusd-py's BodyReader, for
tests/test_socket_body.py: it answers whether the body was taken over from the
socket, how many bytes it read and their sha-256. `?read=N` stops reading after
N bytes (at a block boundary) and answers at once, as an interrupted upload does."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from tusd_py.body import BodyReader
from tusd_py.errors import TusError
from tusd_py.socket_body import SOCKET_BODY_EXTENSION


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    read_at_most = int(query["read"][0]) if "read" in query else None
    offered = scope.get("extensions", {}).get(SOCKET_BODY_EXTENSION)
    reader = BodyReader(receive, limit=1 << 40, idle_timeout=5.0, socket_body=offered)
    hasher, length, error = hashlib.sha256(), 0, None
    try:
        while read_at_most is None or length < read_at_most:
            block = await reader.next_block()
            if block is None:
                break
            hasher.update(block)
            length += len(block)
            reader.recycle(block)
    except TusError as failure:
        error = failure.code
        for block in reader.take_pending():  # received before the failure: kept, as transfer.py does
            hasher.update(block)
            length += len(block)
    finally:
        taken = reader.from_socket
        reader.close()
    body = json.dumps(
        {"offered": offered is not None, "taken": taken, "length": length, "sha256": hasher.hexdigest(), "error": error}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
