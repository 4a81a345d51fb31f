"""Log lines as tusd writes them: `key=value` text (values quoted when they
need it, so a hostile header cannot forge fields) or one JSON object per line."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {"msg": record.getMessage()}


_NEEDS_QUOTES = re.compile(r'[ ="\\]')
_PLAIN = re.compile(r"[!#-<>-\[\]-~]+")  # printable ASCII but space, '=', '"' and '\\': never quoted


def _text_value(value: Any) -> str:
    if type(value) is int or type(value) is float:  # status, durations: never quoted
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) is not None:  # methods, paths, ids: one C call decides
        return text
    if text == "":
        return '""'  # no request id, the usual case
    if _NEEDS_QUOTES.search(text) is not None or not text.isprintable():
        return json.dumps(text)
    return text


class _Formatter(logging.Formatter):
    # A line per request: format the timestamp once per second, not once per line.
    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        return f"{self._stamp},{int((created - second) * 1000):03d}"

    def render(self, created: float, level: str, name: str, fields: dict[str, Any]) -> str:
        raise NotImplementedError


class TextFormatter(_Formatter):
    def render(self, created: float, level: str, name: str, fields: dict[str, Any]) -> str:
        text = " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        return f"{self.stamp(created)} {level} {name}: {text}"

    def format(self, record: logging.LogRecord) -> str:
        line = self.render(record.created, record.levelname, record.name, _fields(record))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)  # tracebacks stay readable
        return line


class JsonFormatter(_Formatter):
    def render(self, created: float, level: str, name: str, fields: dict[str, Any]) -> str:
        return json.dumps({"time": self.stamp(created), "level": level, "logger": name, **fields})

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return self.render(record.created, record.levelname, record.name, fields)


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler, which can also write a line straight from its fields.

    Those lines (one per request) are written together once the event loop has run
    the callbacks at hand: one write system call per loop turn rather than one per
    request (W3 +3 %, W4 +4 %, spec_notes/serving.md). They wait for microseconds, never
    for the next request; any other record, and flush(), writes them first, so the
    order holds."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []

    def write_fields(self, name: str, fields: dict[str, Any]) -> None:
        formatter = self.formatter
        assert isinstance(formatter, _Formatter)
        line = formatter.render(time.time(), "INFO", name, fields) + self.terminator
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            if len(self._pending) > 1:
                return  # a write is already due
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop in this thread: now
                self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending = "".join(self._pending), []
            try:
                if lines:
                    self.stream.write(lines)
                super().flush()
            except Exception:
                pass  # a log line must never fail the request it describes

    def emit(self, record: logging.LogRecord) -> None:
        self.flush()  # request lines still waiting come first
        super().emit(record)


_handler: LineHandler | None = None


def direct_writer(logger: logging.Logger) -> Callable[[str, dict[str, Any]], None] | None:
    """Our handler's `write_fields` when an INFO record of `logger` would reach it and
    nothing else, unfiltered; None otherwise (someone else configured logging).

    The request log's fast path: a LogRecord and the logging machinery cost ~15 us
    per request in a running server (cold caches), a fifth of a HEAD."""
    handler = _handler
    if handler is None or handler.filters or handler.level > logging.INFO:
        return None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        if current.handlers:
            if current is not logging.root or len(current.handlers) != 1 or current.handlers[0] is not handler:
                return None
        if not current.propagate:
            return None if current is not logging.root else handler.write_fields
        current = current.parent
    return handler.write_fields


def configure(log_format: str, verbose: bool) -> None:
    # Our lines show none of these, and each costs every record a lookup (the logging
    # HOWTO's "Optimization" section): with a line per request, ~1.5 us of ~10.
    logging._srcfile = None  # the caller's file and line
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _handler
    handler = _handler = LineHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
