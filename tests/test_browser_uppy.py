"""Uppy (Dashboard + @uppy/tus + tus-js-client) in headless Chromium against tusd-py.

The demo page (client_demo/, served by client_demo/serve.py) and the tus server
listen on different ports of 127.0.0.1, so every tus request is cross-origin and
goes through the CORS layer (preflights, exposed Location/Upload-Offset).

Needs: the Python package `playwright` (only its driver; the browser is Debian's
/usr/bin/chromium, override with $CHROMIUM; never `playwright install`), and
`npm ci` (the bundle is rebuilt here when it is missing or older than its sources).
`UPDATE_SCREENSHOT=1` rewrites client_demo/screenshot.png.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import TusServer, stop_process

try:
    from playwright.sync_api import Browser, Page, Request, Response, sync_playwright
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # reported as a failure by the `browser` fixture, never a skip
    sync_playwright = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "client_demo"
BUNDLE = DEMO / "dist" / "bundle.js"
SCREENSHOT = DEMO / "screenshot.png"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MiB = 1024 * 1024
UPLOAD_TIMEOUT_MS = 45_000
STEP_TIMEOUT_MS = 15_000
START_TIMEOUT = 15.0
FILE_INPUT = 'input.uppy-Dashboard-input[name="files[]"]:not([webkitdirectory])'
UPLOAD_BUTTON = "button.uppy-StatusBar-actionBtn--upload"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bundle() -> Path:
    """client_demo/dist/bundle.js, rebuilt when missing or older than its sources."""
    sources = [*(DEMO / "src").rglob("*"), ROOT / "package.json", ROOT / "package-lock.json"]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    fresh = BUNDLE.is_file() and (DEMO / "dist" / "bundle.css").is_file() and BUNDLE.stat().st_mtime >= newest
    if not fresh:
        npm = shutil.which("npm")
        if npm is None or not (ROOT / "node_modules" / "@uppy" / "core").is_dir():
            pytest.fail(f"{BUNDLE.relative_to(ROOT)} must be built first: `npm ci && npm run build` in {ROOT}")
        built = subprocess.run([npm, "run", "build"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        if built.returncode != 0:
            pytest.fail(f"`npm run build` failed ({built.returncode}):\n{built.stdout}\n{built.stderr}")
    return BUNDLE


@pytest.fixture(scope="module")
def page_url(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """client_demo/serve.py on a free port: the page's origin differs from the tus server's."""
    log_path = tmp_path_factory.mktemp("page-server") / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(DEMO / "serve.py"), "--port", "0", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=log,
            bufsize=0,
        )
    assert process.stdout is not None
    url = None
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if selector.select(timeout=max(0.0, deadline - time.monotonic())):
            line = process.stdout.readline().decode()
            if " at http://" in line:
                url = line.split(" at ", 1)[1].strip()
    try:
        if url is None:
            pytest.fail(f"client_demo/serve.py did not print its URL\n{log_path.read_text(errors='replace')}")
        yield url
    finally:
        stop_process(process)
        process.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail(
            "the Python package `playwright` is missing: `.venv/bin/pip install playwright` "
            "(only the wheel; never `playwright install`, the test drives /usr/bin/chromium)"
        )
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (or set $CHROMIUM)")
    with sync_playwright() as playwright:
        # A fresh temporary profile per launch; nothing from the host profile.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Session:
    """One browser context + page with everything a failure message needs."""

    page: Page
    tus: TusServer
    page_origin: str
    console: list[str] = field(default_factory=list)
    tus_requests: list[dict[str, Any]] = field(default_factory=list)

    def record_request(self, request: Request) -> None:
        if request.url.startswith(self.tus.origin):
            self.tus_requests.append(
                {
                    "method": request.method,
                    "url": request.url,
                    "offset": request.headers.get("upload-offset"),
                    "request": request,
                }
            )

    def record_response(self, response: Response) -> None:
        if response.url.startswith(self.tus.origin):
            self.console.append(f"[response] {response.request.method} {response.url} -> {response.status}")

    def events(self) -> list[dict[str, Any]]:
        try:
            return self.page.evaluate("window.events || []")
        except PlaywrightError as error:
            return [{"type": "unavailable", "message": str(error)}]

    def diagnostics(self) -> str:
        events = self.events()
        progress = [e for e in events if e.get("type") == "upload-progress"]
        others = [e for e in events if e.get("type") != "upload-progress"]
        requests = "\n".join(f"  {r['method']} {r['url']} Upload-Offset={r['offset']}" for r in self.tus_requests)
        return (
            f"--- page events (without {len(progress)} upload-progress; last: {progress[-1:]}):\n"
            f"{json.dumps(others, ensure_ascii=False, indent=1)}\n"
            f"--- tus requests seen by the browser:\n{requests}\n"
            f"--- page console:\n" + "\n".join(self.console) + "\n"
            f"--- server log:\n{self.tus.log()}"
        )

    def wait_for(self, what: str, js_predicate: str, timeout_ms: int = STEP_TIMEOUT_MS, arg: Any = None) -> None:
        """Wait (bounded) for a JS predicate; fail on timeout or as soon as Uppy reports an error."""
        failed = "(window.events || []).some(e => ['upload-error', 'error', 'restriction-failed'].includes(e.type))"
        try:
            self.page.wait_for_function(f"(arg) => ({js_predicate}) || {failed}", arg=arg, timeout=timeout_ms)
        except PlaywrightError as error:
            pytest.fail(f"timed out waiting for {what} ({timeout_ms} ms): {error}\n{self.diagnostics()}")
        if self.page.evaluate(failed):
            pytest.fail(f"Uppy reported an error while waiting for {what}\n{self.diagnostics()}")

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            pytest.fail(f"{message}\n{self.diagnostics()}")


@pytest.fixture
def open_page(browser: Browser, page_url: str) -> Iterator[Callable[..., Session]]:
    """open_page(tus, **query) -> Session on the demo page pointed at that tus server."""
    contexts = []

    def open_(tus: TusServer, **query: str) -> Session:
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        context.set_default_timeout(STEP_TIMEOUT_MS)
        contexts.append(context)
        session = Session(context.new_page(), tus, page_url.rstrip("/"))
        page = session.page
        page.on("console", lambda message: session.console.append(f"[{message.type}] {message.text}"))
        page.on("pageerror", lambda error: session.console.append(f"[pageerror] {error}"))
        page.on("requestfailed", lambda r: session.console.append(f"[requestfailed] {r.method} {r.url} {r.failure}"))
        page.on("request", session.record_request)
        page.on("response", session.record_response)
        params = "&".join(f"{key}={quote(value, safe='')}" for key, value in {"endpoint": tus.url, **query}.items())
        goto(session, f"{page_url}?{params}")
        return session

    yield open_
    for context in contexts:
        context.close()


def goto(session: Session, url: str | None = None) -> None:
    try:
        if url is None:
            session.page.reload(wait_until="load")
        else:
            session.page.goto(url, wait_until="load")
    except PlaywrightError as error:
        pytest.fail(f"could not load the demo page: {error}\n{session.diagnostics()}")
    session.wait_for("the demo page's script", "window.demoReady === true && !!window.uppy")


# ---------------------------------------------------------------- helpers


def make_file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def add_file_and_upload(session: Session, path: Path) -> str:
    """Pick the file through the Dashboard's hidden <input type=file>, press Upload; return Uppy's file id."""
    session.page.locator(FILE_INPUT).first.set_input_files(path)
    session.wait_for("the file to appear in Uppy", "window.uppy.getFiles().length === 1")
    file_id: str = session.page.evaluate("window.uppy.getFiles()[0].id")
    session.page.locator(UPLOAD_BUTTON).click()
    return file_id


def upload_success(session: Session) -> dict[str, Any]:
    session.wait_for("upload-success", "window.events.some(e => e.type === 'upload-success')", UPLOAD_TIMEOUT_MS)
    successes = [e for e in session.events() if e["type"] == "upload-success"]
    session.check(len(successes) == 1, f"expected one upload-success event, got {successes}")
    session.check(
        str(successes[0].get("url", "")).startswith(session.tus.url),
        f"upload URL {successes[0].get('url')!r} is not under {session.tus.url}",
    )
    return successes[0]


def stored(tus: TusServer, url: str) -> tuple[bytes, dict[str, Any]]:
    upload_id = url.rsplit("/", 1)[1]
    info = json.loads((tus.upload_dir / f"{upload_id}.info").read_text())
    return (tus.upload_dir / upload_id).read_bytes(), info


def save_screenshot(session: Session) -> None:
    if SCREENSHOT.exists() and os.environ.get("UPDATE_SCREENSHOT") != "1":
        return
    session.wait_for("the Dashboard's complete state", "!!document.querySelector('.uppy-StatusBar.is-complete')")
    session.page.screenshot(path=str(SCREENSHOT), full_page=False)


# ---------------------------------------------------------------- tests


def test_uppy_dashboard_uploads_non_ascii_file_cross_origin(
    make_server: Callable[..., TusServer], open_page: Callable[..., Session], tmp_path: Path
) -> None:
    # T-CRE-* creation + T-CORE-* PATCH from a real browser client; T-META-* (UTF-8 metadata values).
    tus = make_server()
    name = "résumé-📄.bin"
    data = make_file(tmp_path / name, 8 * MiB, seed=5)
    session = open_page(tus)

    file_id = add_file_and_upload(session, tmp_path / name)
    success = upload_success(session)
    url = success["url"]

    stored_data, info = stored(tus, url)
    session.check(len(stored_data) == len(data), f"stored {len(stored_data)} bytes, sent {len(data)}")
    session.check(stored_data == data, "stored bytes differ from the file")
    file_type = session.page.evaluate("(id) => window.uppy.getFile(id).type", file_id)
    assert info["Size"] == len(data) and info["Offset"] == len(data), info
    assert info["MetaData"]["filename"] == name, info["MetaData"]
    assert info["MetaData"]["filetype"] == file_type and file_type, (info["MetaData"], file_type)
    # Only one creation; the whole file in the single PATCH (chunkSize defaults to the whole file).
    methods = [r["method"] for r in session.tus_requests]
    assert methods.count("POST") == 1 and methods.count("PATCH") == 1, session.diagnostics()
    # Cross-origin: the browser sent CORS requests (and read Location/Upload-Offset, so they were exposed).
    origins = {r["request"].all_headers().get("origin") for r in session.tus_requests}
    assert origins == {session.page_origin} != {session.tus.origin}, origins

    # The finished-uploads list links the upload URL, which downloads the same bytes
    # (cross-origin fetch: exercises GET + CORS exposed headers).
    link = session.page.locator("#finished a").first
    assert link.get_attribute("href") == url
    assert link.text_content() == name
    download = session.page.evaluate(
        """async (url) => {
            const response = await fetch(url);
            const digest = await crypto.subtle.digest('SHA-256', await response.arrayBuffer());
            return {
                status: response.status,
                sha256: Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, '0')).join(''),
                disposition: response.headers.get('Content-Disposition'),
            };
        }""",
        url,
    )
    assert download["status"] == 200, download
    assert download["sha256"] == hashlib.sha256(data).hexdigest(), download
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9-%F0%9F%93%84.bin" in (download["disposition"] or ""), download

    save_screenshot(session)


def test_uppy_resumes_after_reload_from_stored_fingerprint(
    make_server: Callable[..., TusServer], open_page: Callable[..., Session], tmp_path: Path
) -> None:
    # T-CORE-* resume: HEAD then PATCH from the server's offset, no new creation (T-CRE-*).
    tus = make_server()
    size, chunk = 32 * MiB, MiB
    path = tmp_path / "big.bin"
    data = make_file(path, size, seed=7)
    session = open_page(tus, chunkSize=str(chunk))

    # Pause from inside the page at the first progress event past 25 %, so a fast
    # localhost upload cannot finish before the test gets to press anything.
    session.page.evaluate(
        """() => window.uppy.on('upload-progress', (file, progress) => {
            if (!window.pausedOnce && progress.bytesUploaded > 0.25 * progress.bytesTotal) {
                window.pausedOnce = true;
                window.uppy.pauseResume(file.id);
            }
        })"""
    )
    file_id = add_file_and_upload(session, path)
    session.wait_for(
        "the pause past 25 %", "window.pausedOnce === true && window.uppy.getFile(arg).isPaused", arg=file_id
    )
    session.check(
        not any(e["type"] == "upload-success" for e in session.events()), "the upload finished before the pause"
    )
    posts = [r for r in session.tus_requests if r["method"] == "POST"]
    session.check(len(posts) == 1, f"expected one POST before the reload, saw {len(posts)}")
    stored_keys = session.page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))")
    session.check(len(stored_keys) == 1, f"expected one stored tus fingerprint, localStorage has {stored_keys}")

    before_reload = len(session.tus_requests)
    paused_url = session.tus_requests[-1]["url"]
    goto(session)  # reload: a new Uppy, the same localStorage
    session.check(
        session.page.evaluate("window.uppy.getFiles().length") == 0, "the reloaded page should start without files"
    )
    add_file_and_upload(session, path)
    success = upload_success(session)

    after = session.tus_requests[before_reload:]
    methods = [r["method"] for r in after]
    session.check("POST" not in methods, f"a new upload was created after the reload: {methods}")
    upload_url = success["url"]
    session.check(upload_url == paused_url, f"finished at {upload_url}, paused at {paused_url}")
    session.check(
        all(r["url"] == upload_url for r in after), f"requests after the reload went elsewhere than {upload_url}"
    )
    session.check(methods[:1] == ["HEAD"], f"the resumed upload should start with HEAD, got {methods[:3]}")
    offsets = [int(r["offset"]) for r in after if r["method"] == "PATCH"]
    session.check(bool(offsets) and offsets[0] > 0, f"first PATCH after the reload had Upload-Offset {offsets[:1]}")
    session.check(offsets[0] >= size // 4, f"resumed at {offsets[0]}, below the 25 % paused at")
    # chunkSize is honoured: each PATCH advances the offset by at most one chunk.
    steps = [b - a for a, b in zip(offsets, [*offsets[1:], size], strict=True)]
    session.check(all(0 < step <= chunk for step in steps), f"PATCH offsets after the reload: {offsets}")
    session.check(len(offsets) == math.ceil((size - offsets[0]) / chunk), f"PATCH offsets: {offsets}")

    stored_data, info = stored(tus, upload_url)
    session.check(stored_data == data, f"stored {len(stored_data)} bytes differ from the {size}-byte file")
    assert info["Offset"] == size and info["MetaData"]["filename"] == "big.bin", info
    # removeFingerprintOnSuccess: the finished upload is no longer offered for resuming.
    assert session.page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []
