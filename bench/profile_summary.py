"""Summarise a py-spy raw (collapsed-stack) profile of tusd-py by layer.

    .venv/bin/py-spy record -p PID -r 250 --nonblocking -t --nolineno -f raw -o W3.raw -d 12
    .venv/bin/python bench/profile_summary.py W3.raw

Prints, per thread kind (event loop vs worker threads), the share of samples
whose innermost frame is in each group ("self"), the share of samples that pass
through each group at all ("total"), and the top functions by self and total.
Groups are assigned from file names, so they survive small code changes.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# First match wins; checked against "function (file)" of one frame.
GROUPS = (
    ("logging", r"\(logging/|log_format\.py|request_log\.py"),
    ("our middleware (method override, CORS)", r"method_override\.py|cors\.py"),
    ("uvicorn/httptools", r"uvicorn/|httptools|http_protocol\.py"),
    ("Starlette routing/middleware", r"starlette/(routing|applications|_exception_handler|middleware/|_utils)"),
    ("Starlette Request/Response/headers", r"starlette/(requests|responses|datastructures|background|concurrency)"),
    ("thread hops (anyio.to_thread, threading)",
     r"anyio/to_thread|WorkerThread|run_sync_in_worker_thread|\(threading\.py|concurrent/futures|queue\.py"),
    ("anyio (cancel scopes, task groups, streams)", r"anyio/"),
    ("locking", r"tusd_py/lockers/"),
    ("file store (I/O)", r"tusd_py/stores/|tusd_py/fsutil\.py|\(os\.py|genericpath\.py|posixpath\.py"),
    ("JSON + info codec", r"\(json/|tusd_py/info\.py|tusd_py/digests\.py"),
    ("metrics (prometheus_client)", r"prometheus_client|tusd_py/metrics\.py"),
    ("hooks/events", r"tusd_py/(hooks|events)\.py"),
    ("body streaming (transfer, body)", r"tusd_py/(transfer|body|completion|checksum)\.py"),
    ("our handler + protocol", r"tusd_py/"),
    ("asyncio/contextlib/dataclasses", r"\((asyncio|contextlib|dataclasses|enum|typing|abc|functools)"),
)  # fmt: skip
_COMPILED = [(name, re.compile(pattern)) for name, pattern in GROUPS]


def group_of(frame: str) -> str:
    for name, pattern in _COMPILED:
        if pattern.search(frame):
            return name
    return "other: " + frame


def read(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            stacks.append((stack.split(";"), int(count)))
    return stacks


def thread_kind(frames: list[str]) -> str:
    # Worker threads start in threading.py's _bootstrap; the event loop thread does not.
    return "worker threads" if any("_bootstrap" in frame for frame in frames[:3]) else "event loop thread"


def summarise(stacks: list[tuple[list[str], int]], top: int = 15) -> str:
    out = []
    total_samples = sum(count for _, count in stacks)
    by_kind = Counter()
    for frames, count in stacks:
        by_kind[thread_kind(frames)] += count
    out.append(f"samples: {total_samples} ({', '.join(f'{k} {v}' for k, v in by_kind.most_common())})")
    for kind in by_kind:
        chosen = [(frames, count) for frames, count in stacks if thread_kind(frames) == kind]
        n = sum(count for _, count in chosen)
        self_group, total_group, self_fn, total_fn = Counter(), Counter(), Counter(), Counter()
        for frames, count in chosen:
            frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
            if not frames:
                continue
            self_group[group_of(frames[-1])] += count
            self_fn[frames[-1]] += count
            for g in {group_of(f) for f in frames}:
                total_group[g] += count
            for fn in set(frames):
                total_fn[fn] += count
        out.append(f"\n## {kind}: {n} samples ({100 * n / total_samples:.0f}%)")
        out.append("\n| group | self % | total % |\n|---|---|---|")
        for g, c in self_group.most_common():
            if c / n >= 0.005:
                out.append(f"| {g} | {100 * c / n:.1f} | {100 * total_group[g] / n:.1f} |")
        out.append(f"\ntop {top} functions by self %:")
        for fn, c in self_fn.most_common(top):
            out.append(f"  {100 * c / n:5.1f}  {fn}")
        out.append(f"\ntop {top} functions by total % (outermost frames excluded):")
        shown = 0
        for fn, c in total_fn.most_common():
            if c / n > 0.97:
                continue  # the frames every sample passes through
            out.append(f"  {100 * c / n:5.1f}  {fn}")
            shown += 1
            if shown == top:
                break
    return "\n".join(out)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(f"# {path}\n{summarise(read(path))}\n")
