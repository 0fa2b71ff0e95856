"""Render the book at smoke and open every page in a real headless browser (Debian's Chromium).

Checks, per page of ``_toc.yml``: the page loads (HTTP 200, no JavaScript error), every image
has loaded (``naturalWidth > 0``), notebook chapters have at least one figure, no Python
traceback or error output is shown, and every link inside the site resolves. One full-page
screenshot per page is kept under ``_build/smoke/screenshots/`` as a build artefact.

Chromium is driven by Playwright's Python API with ``executable_path`` (never ``playwright
install``); the site is served on 127.0.0.1 and every request elsewhere is aborted, so the test
runs offline.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MEDADV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TRACEBACK_TEXT = ("Traceback (most recent call last)",)
# jupyter-book 1.0.4 registers sphinx-thebe's configuration script twice on every page (a plain
# `jupyter-book build` does the same); the second copy fails harmlessly since thebe is off.
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
ERROR_OUTPUT = re.compile(r"\b\w*(Error|Exception)\b\s*:|^\s*ERROR\b", re.M)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.mirror]


def _chromium_or_skip() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM} (install Debian's package: apt-get install -y chromium; "
                    "or set MEDADV_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    return CHROMIUM


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture
def served_site(smoke_site):
    """The smoke site served on 127.0.0.1 (an ephemeral port) for the duration of the test."""
    root = smoke_site.index.parent
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield smoke_site, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_every_page_renders_in_chromium(served_site):
    from playwright.sync_api import sync_playwright

    from medadv_lib import book

    executable = _chromium_or_skip()
    build, base = served_site
    docs = book.toc_entries()
    chapters = set(book.toc_chapters())
    shots = book.screenshots_dir("smoke")
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    problems: list[str] = []
    internal_links: set[str] = set()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            # offline: anything not served by our server is refused at once instead of timing out
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                          else route.abort())
            page = context.new_page()
            js_errors: list[str] = []
            page.on("pageerror", lambda exc: js_errors.append(str(exc)) if str(exc) not in KNOWN_JS_ERRORS else None)

            pages = [("index", "index.html")] + [(doc, f"{doc}.html") for doc in docs]
            for doc, rel in pages:
                js_errors.clear()
                response = page.goto(base + rel, wait_until="load")
                page.wait_for_load_state("networkidle")
                if response is None or response.status != 200:
                    problems.append(f"{rel}: HTTP {None if response is None else response.status}")
                    continue
                if doc == "index":  # jupyter-book's index.html redirects to the root page
                    if not page.url.endswith(f"{docs[0]}.html"):
                        problems.append(f"index.html led to {page.url}, not the root page {docs[0]}")
                    continue
                title = page.title()
                images = page.eval_on_selector_all(
                    "img", "els => els.map(e => ({src: e.currentSrc || e.src, ok: e.complete && e.naturalWidth > 0,"
                           " output: !!e.closest('.cell_output')}))")
                broken = [i["src"] for i in images if not i["ok"]]
                figures = [i for i in images if i["output"] and i["ok"]]
                text = page.inner_text("body")
                outputs = page.eval_on_selector_all(".cell_output", "els => els.map(e => e.innerText)")
                error_blocks = page.eval_on_selector_all(".output.traceback, .output.error",
                                                         "els => els.map(e => e.innerText.slice(0, 200))")
                if broken:
                    problems.append(f"{rel}: images not loaded: {broken}")
                if Path(doc).name in chapters and not figures:
                    problems.append(f"{rel}: a chapter page without any figure")
                for marker in TRACEBACK_TEXT:
                    if marker in text:
                        problems.append(f"{rel}: shows a Python traceback")
                if error_blocks:
                    problems.append(f"{rel}: error outputs: {error_blocks}")
                bad_outputs = [o[:200] for o in outputs if ERROR_OUTPUT.search(o)]
                if bad_outputs:
                    problems.append(f"{rel}: outputs that look like errors: {bad_outputs}")
                if js_errors:
                    problems.append(f"{rel}: JavaScript errors: {js_errors}")
                if not title or "404" in title:
                    problems.append(f"{rel}: bad title {title!r}")
                hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
                internal_links.update(h.split("#")[0] for h in hrefs if h.startswith(base))
                page.screenshot(path=str(shots / f"{doc.replace('/', '-')}.png"), full_page=True)

            for link in sorted(internal_links):
                status = context.request.get(link).status
                if status != 200:
                    problems.append(f"broken link inside the site: {link} (HTTP {status})")
        finally:
            browser.close()

    assert not problems, "\n".join(problems)
    taken = sorted(p.name for p in shots.glob("*.png"))
    assert len(taken) == len(docs), taken
