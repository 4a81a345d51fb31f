"""Run the upload demo: tusd-py plus the Uppy page, on two origins of 127.0.0.1.

    .venv/bin/python client_demo/demo.py [--tus-port 8080] [--page-port 8081]
        [--upload-dir ./data] [--rebuild] [-- extra tusd-py flags, e.g. -max-size 1000000]

Builds client_demo/dist/bundle.js (`npm ci` when node_modules is missing, then
`npm run build`) if it is missing, starts `python -m tusd_py -host 127.0.0.1
-port 8080 -upload-dir ./data` and the page server, prints the page's URL and
stops both on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import quote

from serve import HERE, make_page_server, start_in_thread

ROOT = HERE.parent
BUNDLE = HERE / "dist" / "bundle.js"
START_TIMEOUT = 15.0


def build_bundle() -> None:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("demo: npm is needed to build client_demo/dist/bundle.js (Node 18+)")
    if not (ROOT / "node_modules" / "@uppy" / "core").is_dir():
        print("demo: npm ci", flush=True)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True)
    print("demo: npm run build", flush=True)
    subprocess.run([npm, "run", "build"], cwd=ROOT, check=True)


def start_tusd(port: int, upload_dir: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    command = [sys.executable, "-m", "tusd_py", "-host", "127.0.0.1", "-port", str(port), "-upload-dir", upload_dir]
    command += extra
    print("demo: " + " ".join(command), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, bufsize=0, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = process.stdout.readline()
            if not line:
                break
            sys.stdout.write(line.decode(errors="replace"))
            if b"serving at " in line:
                return process, line.decode().split("serving at ", 1)[1].strip()
    stop(process)
    sys.exit("demo: tusd-py did not start (see its messages above)")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tus-port", type=int, default=8080, help="tusd-py's port (default 8080; 0 = any free)")
    parser.add_argument("--page-port", type=int, default=8081, help="the page's port (default 8081; 0 = any free)")
    parser.add_argument("--upload-dir", default="./data", help="tusd-py's -upload-dir (default ./data)")
    parser.add_argument("--rebuild", action="store_true", help="run `npm run build` even if the bundle exists")
    parser.add_argument("tusd_flags", nargs="*", help="more tusd-py flags, after `--`")
    args = parser.parse_args(argv)
    # `kill <pid>` stops both servers as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)

    if args.rebuild or not BUNDLE.is_file():
        build_bundle()
    page_server = make_page_server(args.page_port, quiet=True)
    process, tus_url = start_tusd(args.tus_port, args.upload_dir, args.tusd_flags)
    thread = start_in_thread(page_server)
    print(f"\nOpen {page_server.url}?endpoint={quote(tus_url, safe=':/')}\n(Ctrl-C stops both servers)", flush=True)
    try:
        # SIGINT reaches tusd-py too (same process group); it exits on its own.
        while process.poll() is None:
            try:
                process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue
        print(f"demo: tusd-py exited with status {process.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
        return 0
    finally:
        page_server.shutdown()
        page_server.server_close()
        thread.join(timeout=5)
        stop(process)


if __name__ == "__main__":
    sys.exit(main())
