r"""Render the book at smoke and open every page in a real headless browser (Debian's Chromium).

Checks, per page of ``_toc.yml``: the page loads (HTTP 200, no JavaScript error), every image
has loaded (``naturalWidth > 0``), notebook chapters have at least one figure, no Python
traceback or error output is shown, and every link inside the site resolves. One full-page
screenshot per page is kept under ``_build/smoke/screenshots/`` as a build artefact.

Math: every formula must render with the MathJax copied into the site (``mjx-container`` inside
every ``.math`` node, no TeX error) and no raw TeX delimiter (``\(``, ``\)``, ``\[``, ``\]``,
``$$``, or ``$...\cmd...$``) may remain in the text a reader sees. This is checked twice: on the
served site, and on the site opened from disk (``file://``) as a reader with no network would.

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

# Raw TeX a reader must never see: the delimiters Sphinx writes around math for MathJax, display
# dollars, and single-dollar math holding a TeX command (e.g. `$\epsilon$` in a table header).
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\n]{0,80}\\[A-Za-z]+[^$\n]{0,80}\$")

# Waits for MathJax's first typeset (if the page loads MathJax at all), then reports, per page:
# the math nodes Sphinx wrote, those without MathJax output, TeX errors, and the visible text
# outside code (code cells may legitimately show backslashes and dollars).
MATH_REPORT_JS = """async () => {
  const mj = window.MathJax;
  let loaded = false;
  if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; loaded = true; }
  const nodes = Array.from(document.querySelectorAll('.math'));
  const unrendered = nodes.filter(n => !n.querySelector('mjx-container'))
                          .map(n => n.textContent.trim().slice(0, 80));
  const errors = Array.from(document.querySelectorAll('mjx-merror, [data-mjx-error]'))
                      .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80));
  const skip = 'pre, code, script, style, noscript, textarea, template, mjx-container, .highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const parts = [];
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement;
    if (!el || el.closest(skip)) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    parts.push(t.textContent);
  }
  return {loaded, count: nodes.length, rendered: nodes.length - unrendered.length, unrendered, errors,
          text: parts.join(' ')};
}"""


def math_problems(page, rel: str) -> list[str]:
    """What is wrong with the math of the page open in ``page`` (empty when every formula rendered)."""
    report = page.evaluate(MATH_REPORT_JS)
    problems = []
    if report["count"] and not report["loaded"]:
        problems.append(f"{rel}: {report['count']} formula(s) but MathJax did not load")
    if report["unrendered"]:
        problems.append(f"{rel}: {len(report['unrendered'])} of {report['count']} formula(s) not rendered, "
                        f"e.g. {report['unrendered'][:3]}")
    if report["errors"]:
        problems.append(f"{rel}: TeX errors {report['errors'][:5]}")
    raw = sorted({m.group(0)[:60] for m in RAW_TEX.finditer(report["text"])})
    if raw:
        problems.append(f"{rel}: raw TeX visible in the text: {raw[:8]}")
    return problems


def test_raw_tex_pattern():
    """The raw-TeX pattern catches what an unrendered page shows, and not ordinary prose."""
    for shown in (r"the margin \(w_t - w_y\) grows", r"\[ \|\delta\|_\infty \le \epsilon \]",
                  "$$x$$", r"budget $\epsilon$ per pixel"):
        assert RAW_TEX.search(shown), shown
    for prose in ("costs $5 and $10", "a (parenthesis) and [bracket]", "8/256 = 3.1 %", r"C:\data"):
        assert not RAW_TEX.search(prose), prose


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
    formulas: dict[str, int] = {}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            # offline: anything not served by our server is refused at once instead of timing out
            context.route("**/*", lambda route: route.continue_()
                          if route.request.url.startswith((base, "file://")) else route.abort())
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
                problems.extend(math_problems(page, rel))
                formulas[doc] = page.eval_on_selector_all(".math", "els => els.length")
                hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
                internal_links.update(h.split("#")[0] for h in hrefs if h.startswith(base))
                page.screenshot(path=str(shots / f"{doc.replace('/', '-')}.png"), full_page=True)

            # the same site opened from disk, as a reader without a server or a network would
            root = build.index.parent.resolve()
            for doc in docs:
                page.goto((root / f"{doc}.html").as_uri(), wait_until="load")
                problems.extend(f"file:// {p}" for p in math_problems(page, f"{doc}.html"))

            for link in sorted(internal_links):
                status = context.request.get(link).status
                if status != 200:
                    problems.append(f"broken link inside the site: {link} (HTTP {status})")
        finally:
            browser.close()

    assert not problems, "\n".join(problems)
    # the check above must have had formulas to look at: the fixed-direction chapter is full of them
    assert sum(formulas.values()) > 0, f"no formula on any page: {formulas}"
    taken = sorted(p.name for p in shots.glob("*.png"))
    assert len(taken) == len(docs), taken
