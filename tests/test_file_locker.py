"""The file locker's kept descriptors: two FileLocker instances on one directory stand in for two
worker processes (flock locks belong to open file descriptions, so two instances exclude each
other exactly as two processes do). A descriptor kept open after a release must never let a
holder lock a lock file that was removed while another holds the one now at the path."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import run_bounded

from tusd_py.errors import TusError
from tusd_py.lockers import FileLocker

BOUND = 10.0


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_bounded(scenario, BOUND)


def make(directory: Path, **options: object) -> FileLocker:
    return FileLocker(directory, **{"acquire_timeout": 0.3, "acquirer_poll": 0.01, **options})  # type: ignore[arg-type]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_instances_exclude_each_other_with_kept_descriptors(tmp_path: Path) -> None:
    first, second = make(tmp_path), make(tmp_path)

    async def scenario() -> None:
        async with first.hold("u1", interrupt=False):
            pass  # released: its descriptor stays open
        async with second.hold("u1", interrupt=False):
            with pytest.raises(TusError) as refused:
                async with first.hold("u1", interrupt=False):
                    pytest.fail("two holders at once")
            assert refused.value.code == "ERR_LOCK_TIMEOUT"
        async with first.hold("u1", interrupt=False):
            pass

    run(scenario)


def test_a_lock_file_removed_while_held_is_never_locked_again_through_a_kept_descriptor(tmp_path: Path) -> None:
    first, second = make(tmp_path), make(tmp_path)

    async def scenario() -> None:
        async with first.hold("u1", interrupt=False):
            pass  # `first` keeps a descriptor of the original lock file
        async with second.hold("u1", interrupt=False):
            second.discard("u1")  # the upload went away (termination): its lock file is removed
        assert not (tmp_path / "u1.lock").exists()
        # A new lock file appears at the path (a request racing the removal creates it) and is held.
        async with second.hold("u1", interrupt=False):
            # `first`'s kept descriptor is of the removed file: locking it would admit a second holder.
            with pytest.raises(TusError):
                async with first.hold("u1", interrupt=False):
                    pytest.fail("locked a removed lock file while the one at the path was held")
        async with first.hold("u1", interrupt=False):  # free now: `first` locks the file at the path
            with pytest.raises(TusError):
                async with second.hold("u1", interrupt=False):
                    pytest.fail("two holders at once")

    run(scenario)


def test_kept_descriptors_are_bounded(tmp_path: Path) -> None:
    locker = make(tmp_path, open_files=4)

    async def scenario() -> None:
        before = open_descriptors()
        for number in range(40):
            async with locker.hold(f"u{number}", interrupt=False):
                pass
        assert open_descriptors() - before <= 4

    run(scenario)


def test_discard_closes_the_kept_descriptor(tmp_path: Path) -> None:
    locker = make(tmp_path)

    async def scenario() -> None:
        before = open_descriptors()
        async with locker.hold("u1", interrupt=False):
            pass
        assert open_descriptors() == before + 1
        locker.discard("u1")
        assert open_descriptors() == before
        async with locker.hold("u2", interrupt=False):
            locker.discard("u2")  # removed while held: closed on release, not kept
        assert open_descriptors() == before

    run(scenario)
