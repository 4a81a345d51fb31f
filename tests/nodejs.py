"""Running the tus-js-client scripts in tests/js under Node, for the pytest files that drive them."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "js"
NODE_TIMEOUT = 60.0


def run_node(script: str, *args: str) -> dict[str, Any]:
    """Run `tests/js/<script>` and return the JSON it prints (fails clearly without node or npm ci)."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed (Node 20 is required for the tus-js-client tests)")
    if not (ROOT / "node_modules" / "tus-js-client").is_dir():
        pytest.fail(f"tus-js-client is not installed: run `npm ci` in {ROOT}")
    done = subprocess.run(
        ["node", str(SCRIPTS / script), *args], cwd=ROOT, capture_output=True, text=True, timeout=NODE_TIMEOUT
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stderr}"
    return json.loads(done.stdout)


def write_random_file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data
