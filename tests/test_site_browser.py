"""Every page of the built site in headless Chromium, as a reader meets it.

The site is the session fixture ``built_book`` (ci profile, MathJax served
from the site). It is served on 127.0.0.1 and each page is opened in
Debian's Chromium through Playwright, with name resolution for every other
host disabled, so the check also proves that the pages need no network.
Screenshots of every page are kept in _build/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from conftest import ROOT, toc_files

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
SCREENSHOTS = ROOT / "_build" / "screenshots"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", built_book
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def visits(site):
    """Open every page once; return what the browser saw on each."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    base, html_root = site
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for name in toc_files():
            errors = []
            page.on("console", lambda message, log=errors: message.type == "error" and log.append(message.text))
            page.on("pageerror", lambda error, log=errors: log.append(str(error)))
            page.on("requestfailed", lambda request, log=errors: log.append(f"failed request {request.url}"))
            page.goto(urljoin(base, f"{name}.html"), wait_until="load")
            try:
                # Sphinx defines window.MathJax as a configuration object before
                # the library loads; startup.promise exists once it has loaded.
                page.wait_for_function(
                    "() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)",
                    timeout=20000,
                )
                page.evaluate("() => window.MathJax ? MathJax.startup.promise.then(() => true) : true")
            except PlaywrightTimeoutError:
                errors.append("MathJax did not load within 20 s")
            info = page.evaluate(
                """() => ({
                    images: [...document.images].map(img => ({src: img.src, ok: img.complete && img.naturalWidth > 0})),
                    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
                    mathSource: document.querySelectorAll('.math, span.math, div.math').length,
                    mathRendered: document.querySelectorAll('mjx-container').length,
                    mathErrors: document.querySelectorAll('mjx-merror').length,
                    colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
                })"""
            )
            page.screenshot(path=str(SCREENSHOTS / f"{Path(name).name}.png"), full_page=False)
            info["errors"] = list(errors)
            results[name] = info
            page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()
    return results


def test_pages_have_no_console_errors(visits):
    broken = {name: info["errors"] for name, info in visits.items() if info["errors"]}
    assert not broken, broken


def test_every_image_loads(visits):
    broken = [f"{name}: {image['src']}" for name, info in visits.items() for image in info["images"] if not image["ok"]]
    assert not broken, broken


def test_math_renders(visits):
    for name, info in visits.items():
        if info["mathSource"]:
            assert info["mathRendered"] > 0, f"{name}: math left as TeX"
        assert info["mathErrors"] == 0, f"{name}: MathJax errors"


def test_internal_links_resolve(visits, site):
    base, html_root = site
    host = urlparse(base).netloc
    pages = {}
    missing = []
    for name, info in visits.items():
        for link in info["links"]:
            parsed = urlparse(link)
            if parsed.netloc != host:
                continue
            target, fragment = urldefrag(link)
            path = html_root / urlparse(target).path.lstrip("/")
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                missing.append(f"{name} -> {link}")
                continue
            if fragment and path.suffix == ".html":
                text = pages.setdefault(path, path.read_text(encoding="utf-8"))
                if f'id="{fragment}"' not in text:
                    missing.append(f"{name} -> {link} (no anchor)")
    assert not missing, missing


def test_colab_links_end_in_committed_twins(visits):
    tracked = set(
        subprocess.run(["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    )
    for name, info in visits.items():
        source = ROOT / f"{name}.md"
        if "format_name: myst" not in source.read_text()[:2000]:
            continue
        expected = f"notebooks/{Path(name).name}.ipynb"
        assert info["colab"], f"{name}: no Colab link"
        for link in info["colab"]:
            assert link.endswith(expected), f"{name}: {link}"
        assert expected in tracked, f"{expected} is not committed"


def test_screenshots_are_kept(visits):
    for name in visits:
        shot = SCREENSHOTS / f"{Path(name).name}.png"
        assert shot.is_file(), shot
        assert shot.stat().st_size > 10_000, shot
