"""A -hooks-dir with the example scripts of tests/hooks/ installed, and the events they
recorded (shared by the hook tests and any test that checks what hooks were told)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).parent / "hooks"
WAIT = 10.0  # bound on waiting for a background hook


@dataclass
class HookDir:
    """A -hooks-dir and the log `record` writes next to it."""

    path: Path

    @property
    def log_path(self) -> Path:
        return self.path.parent / "hook-events.jsonl"

    def install(self, script: str, *events: str) -> None:
        for event in events:
            target = self.path / event
            shutil.copyfile(SCRIPTS / script, target)
            target.chmod(0o755)

    def answer(self, event: str, response: dict) -> None:
        """What `record` installed as `event` prints on stdout."""
        (self.path / f"{event}.json").write_text(json.dumps(response))

    def clear(self) -> None:
        for entry in self.path.iterdir():
            entry.unlink()
        self.log_path.write_text("")

    def entries(self, upload_id: str | None = None) -> list[dict]:
        """Recorded events (complete lines), for one upload if given (pre-create always counts:
        it is blocking, so it can only be this test's, and tusd gives it no id yet)."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text().split("\n")[:-1]  # the last one may be half-written
        found = [json.loads(line) for line in lines if line]
        if upload_id is None:
            return found
        return [e for e in found if e["hook"] == "pre-create" or e["env"]["TUS_ID"] == upload_id]

    def wait_for(self, done: Callable[[list[dict]], bool], upload_id: str | None = None) -> list[dict]:
        deadline = time.monotonic() + WAIT
        while True:
            found = self.entries(upload_id)
            if done(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"hook events did not arrive in {WAIT}s: {[e['hook'] for e in found]}")
            time.sleep(0.02)  # polling, bounded by the deadline


def hooks_of(entries: list[dict]) -> list[str]:
    return [e["hook"] for e in entries]
