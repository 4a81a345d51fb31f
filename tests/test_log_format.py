"""log_format in-process: the request log's direct path writes exactly the line the logging
machinery would, and steps aside whenever logging is configured by someone else."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tusd_py import log_format, request_log

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    saved = logging.root.handlers[:], logging.root.level
    stream = io.StringIO()
    log_format.configure("text", True)
    logging.root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    logging.root.handlers[:] = saved[0]
    logging.root.setLevel(saved[1])
    log_format._handler = None


@contextmanager
def ours_alone() -> Iterator[None]:
    """pytest adds its capturing handlers to the root logger for each test phase: set them aside."""
    foreign = [handler for handler in logging.root.handlers if handler is not log_format._handler]
    for handler in foreign:
        logging.root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in foreign:
            logging.root.addHandler(handler)


@ours_alone()
def test_direct_line_matches_the_logging_line(configured: io.StringIO) -> None:
    fields = {"event": "RequestCompleted", "method": "HEAD", "path": "/files/a b", "status": 200, "request_id": ""}
    writer = log_format.direct_writer(request_log.log)
    assert writer is not None
    writer(request_log.log.name, fields)
    request_log.log.info("RequestCompleted", extra={"fields": fields})
    direct, through_logging = configured.getvalue().splitlines()
    assert re.fullmatch(STAMP, direct[:23]) and re.fullmatch(STAMP, through_logging[:23])
    assert direct[23:] == through_logging[23:]
    assert direct[23:] == (
        ' INFO tusd_py.requests: event=RequestCompleted method=HEAD path="/files/a b" status=200 request_id=""'
    )


@ours_alone()
def test_direct_path_steps_aside_for_other_handlers_and_filters(configured: io.StringIO) -> None:
    assert log_format.direct_writer(request_log.log) is not None
    extra = logging.StreamHandler(io.StringIO())
    for logger in (request_log.log, logging.getLogger("tusd_py"), logging.root):
        logger.addHandler(extra)
        assert log_format.direct_writer(request_log.log) is None, logger.name
        logger.removeHandler(extra)
    only_errors = logging.Filter("nothing")
    for logger in (request_log.log, logging.root):
        logger.addFilter(only_errors)
        assert log_format.direct_writer(request_log.log) is None
        logger.removeFilter(only_errors)
    assert log_format.direct_writer(request_log.log) is not None


def test_request_log_goes_through_logging_when_someone_else_configured_it() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    request_log.log.addHandler(handler)
    request_log.log.setLevel(logging.INFO)
    try:
        request_log.write("GET", "/files/x", 200, 0.0, "id")
    finally:
        request_log.log.removeHandler(handler)
        request_log.log.setLevel(logging.NOTSET)
    assert stream.getvalue() == "RequestCompleted\n"  # their format, not ours


@ours_alone()
def test_request_lines_are_written_together_once_the_loop_turns(configured: io.StringIO) -> None:
    writer = log_format.direct_writer(request_log.log)
    assert writer is not None

    async def scenario() -> list[str]:
        writer(request_log.log.name, {"event": "RequestCompleted", "n": 1})
        writer(request_log.log.name, {"event": "RequestCompleted", "n": 2})
        before = configured.getvalue()
        await asyncio.sleep(0)  # one loop turn
        after_turn = configured.getvalue()
        writer(request_log.log.name, {"event": "RequestCompleted", "n": 3})
        logging.getLogger("tusd_py").warning("something")  # writes the waiting line first
        return [before, after_turn, configured.getvalue()]

    before, after_turn, last = asyncio.run(scenario())
    assert before == ""
    assert [line[24:] for line in after_turn.splitlines()] == [
        "INFO tusd_py.requests: event=RequestCompleted n=1",
        "INFO tusd_py.requests: event=RequestCompleted n=2",
    ]
    assert [line[24:] for line in last.splitlines()[2:]] == [
        "INFO tusd_py.requests: event=RequestCompleted n=3",
        "WARNING tusd_py: msg=something",
    ]


@ours_alone()
def test_request_lines_outside_an_event_loop_are_written_at_once(configured: io.StringIO) -> None:
    writer = log_format.direct_writer(request_log.log)
    assert writer is not None
    writer(request_log.log.name, {"event": "RequestCompleted"})
    assert configured.getvalue().endswith("INFO tusd_py.requests: event=RequestCompleted\n")
