"""One log line per request, with the client's X-Request-ID.

The fields travel on the log record (`record.fields`); `log_format.py`
renders them as `key=value` text or as JSON.
"""

from __future__ import annotations

import logging
import time

from . import log_format

log = logging.getLogger("tusd_py.requests")


def write(method: str, path: str, status: int, started: float, request_id: str) -> None:
    """`started` is the request's `time.perf_counter()` on arrival."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {
        "event": "RequestCompleted",
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        # tusd logs the request id truncated to 36 characters.
        "request_id": request_id[:36],
    }
    direct = log_format.direct_writer(log)
    if direct is not None:
        direct(log.name, fields)  # the same line, without a LogRecord (log_format.direct_writer)
    else:
        log.info("RequestCompleted", extra={"fields": fields})
