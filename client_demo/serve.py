"""Serve the demo page (client_demo/) on 127.0.0.1, a different origin from the tus server.

    python client_demo/serve.py [--port 8081]

Port 0 picks a free port; the first line printed is always
`serving client_demo at http://127.0.0.1:PORT/` (tests read it). Standard library only.
"""

from __future__ import annotations

import argparse
import functools
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
DEFAULT_PORT = 8081


class DemoRequestHandler(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".html": "text/html; charset=utf-8",
        ".map": "application/json",
    }

    def end_headers(self) -> None:
        # A rebuilt bundle must show up on reload.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


class PageServer(ThreadingHTTPServer):
    daemon_threads = True
    quiet = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def make_page_server(port: int = DEFAULT_PORT, directory: Path = HERE, quiet: bool = False) -> PageServer:
    handler = functools.partial(DemoRequestHandler, directory=str(directory))
    server = PageServer((HOST, port), handler)
    server.quiet = quiet
    return server


def start_in_thread(server: PageServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="page-server", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free port (default {DEFAULT_PORT})")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    if not (HERE / "dist" / "bundle.js").is_file():
        print("note: client_demo/dist/bundle.js is missing; run `npm ci && npm run build`", file=sys.stderr)
    with make_page_server(args.port, quiet=args.quiet) as server:
        print(f"serving client_demo at {server.url}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
