"""tusd-py with its garbage-collector pauses counted: run it in place of
`tusd-py`, load it, then send SIGUSR1 to print (to stderr) how many
collections ran per generation since the last SIGUSR1 and how long they took.

    .venv/bin/python bench/gc_pauses.py -host 127.0.0.1 -port 18730 -upload-dir /dev/shm/gc &
    kill -USR1 $!    # reset
    ../shared/bench/.venv/bin/python ../shared/bench/tusload.py --url http://127.0.0.1:18730/files/ \
        --pid $! --data-dir /dev/shm/gc --workloads W3
    kill -USR1 $!    # report
"""

from __future__ import annotations

import gc
import signal
import sys
import time
from typing import Any

from tusd_py.cli import main

pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
started: dict[int, float] = {}


def on_collection(phase: str, info: dict[str, Any]) -> None:
    generation = info["generation"]
    if phase == "start":
        started[generation] = time.perf_counter()
    elif generation in started:
        pauses[generation].append(time.perf_counter() - started.pop(generation))


def report(signum: int, frame: object) -> None:
    for generation, durations in pauses.items():
        if durations:
            print(
                f"gen{generation}: {len(durations)} collections, {sum(durations) * 1e3:.1f} ms in all, "
                f"longest {max(durations) * 1e3:.2f} ms",
                file=sys.stderr,
            )
        durations.clear()


if __name__ == "__main__":
    gc.callbacks.append(on_collection)
    signal.signal(signal.SIGUSR1, report)
    sys.exit(main(sys.argv[1:]))
