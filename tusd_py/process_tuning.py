"""Process-wide settings for a server that streams request bodies and keeps
lock files open: glibc's malloc thresholds, and the open-file limit.

The open-file limit: the soft limit is raised to the hard one, as the Go
runtime does for tusd, so connections and kept lock-file descriptors
(lockers/file.py) do not run into a distribution's default of 1,024.

glibc malloc:

uvicorn hands a body over in messages of up to a few hundred KiB, each
allocated and freed once. glibc's default thresholds move with use: after such
a free, the top of the heap is given back to the kernel (brk) as soon as 2x
the last freed size lies unused, and the next message takes it back with fresh
page faults. Measured with strace on W1 (1 GiB in one PATCH): 5,600 brk calls
and about 30 % more server CPU than with these fixed settings (4 calls).

- M_MMAP_THRESHOLD 1 MiB: whole body blocks (body.py, 2 MiB) get their
  own mappings, returned whole when freed; messages, and the blocks under 1 MiB
  of bodies that share the block budget, stay on the heap.
- M_TRIM_THRESHOLD 4 MiB: up to 4 MiB of free heap stays mapped between
  messages instead of going back and forth to the kernel.

Setting either also turns off glibc's dynamic adjustment. Only on glibc
(other C libraries have their own policies); a failure changes nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

try:
    import resource
except ImportError:  # not on every platform
    resource = None  # type: ignore[assignment]

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 4 << 20
MMAP_THRESHOLD = 1 << 20

_tuned = False


def tune() -> None:
    """Apply the settings once per process (the CLI, and each spawned worker)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    _raise_open_file_limit()
    _grow_descriptor_table()
    if sys.platform.startswith("linux"):
        _tune_malloc()


def open_file_limit() -> int:
    if resource is None:
        return 1024
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _raise_open_file_limit() -> None:
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # a limit we may not raise stays as it is


def descriptor_table_size() -> int:
    """Descriptors the table is grown to at start: room for the kept lock files and connections."""
    return min(open_file_limit(), 8192)


def _grow_descriptor_table() -> None:
    # The kernel grows a process's descriptor table by doubling. In a process with
    # threads, each growth waits for an RCU grace period (expand_fdtable), which
    # stalled every request in flight for ~10-30 ms (W3 p99 10 -> 28 ms with lock
    # files kept open). Grown now, before any thread starts, it never waits.
    top = descriptor_table_size() - 1
    if top < 64:
        return
    try:
        source = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return
    try:
        os.dup2(source, top)
        os.close(top)
    except OSError:
        pass  # a smaller table only costs the stalls
    finally:
        os.close(source)


def _tune_malloc() -> None:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt is a no-op stub anyway
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
