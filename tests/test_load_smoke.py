"""bench/load.py keeps working: a small run of the load script (many small uploads, a few
streamed large ones, against `tusd-py -workers 2`) completes with no error.

The full-size run (1,000 small and 50 x 100 MiB uploads) is done by hand; see the
script's docstring. Here every upload must still be verified complete and byte-identical
(HEAD offset == length, Repr-Digest, sha256 of the stored file), which the script checks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "load.py"
TIMEOUT = 30.0


def test_load_script_small_run_has_no_errors(tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"
    command = [
        sys.executable,
        str(SCRIPT),
        *("--small", "100", "--large", "4", "--large-size", "8MiB"),
        *("--workers", "2", "--dir", str(tmp_path), "--json", str(results_path), "--timeout", "20"),
    ]
    # Its own process group: on a timeout, the script and the server it started go together.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
        raise AssertionError(f"bench/load.py took more than {TIMEOUT} s:\n{output.decode(errors='replace')}") from None
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "| phase | uploads ok |" in text, text

    results = {r["phase"]: r for r in json.loads(results_path.read_text())}
    assert set(results) == {"small", "large"}
    for phase, uploads, size in (("small", 100, None), ("large", 4, 8 << 20)):
        r = results[phase]
        assert r["errors"] == 0 and r["error_kinds"] == {}, (phase, r)
        assert r["completed"] == r["uploads"] == uploads, (phase, r)
        if size is not None:
            assert r["bytes"] == uploads * size
        assert r["server_processes"] >= 3  # supervisor + 2 workers were measured
        assert r["server_peak_rss"] > 0
    # The script removed its upload directory (nothing left but our results file).
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
