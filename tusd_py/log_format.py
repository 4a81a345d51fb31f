"""Log lines as tusd writes them: `key=value` text (values quoted when they
need it, so a hostile header cannot forge fields) or one JSON object per line."""

from __future__ import annotations

import json
import logging
import re
from typing import Any


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {"msg": record.getMessage()}


_NEEDS_QUOTES = re.compile(r'[ ="\\]')


def _text_value(value: Any) -> str:
    if type(value) is int or type(value) is float:  # status, durations: never quoted
        return str(value)
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text) is not None or not text.isprintable():
        return json.dumps(text)
    return text


class _Formatter(logging.Formatter):
    # A line per request: format the timestamp once per second, not once per line.
    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, super().formatTime(record, datefmt)[:-4]
        return f"{self._stamp},{int(record.msecs):03d}"


class TextFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in _fields(record).items())
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)  # tracebacks stay readable
        return line


class JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        document.update(_fields(record))
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document)


def configure(log_format: str, verbose: bool) -> None:
    # Our lines show none of these, and each costs every record a lookup (the logging
    # HOWTO's "Optimization" section): with a line per request, ~1.5 us of ~10.
    logging._srcfile = None  # the caller's file and line
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
