"""Headless Chromium for the UI tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download does not work offline, so the tests use the system's
Chromium (``RAGLINE_CHROMIUM`` names another binary). Without it, or without the
``playwright`` package, the browser tests skip and say which is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("RAGLINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
STUB_MODEL = "stub-chat@OpenAI-API-Compatible"
# Set to a folder (e.g. docs/screenshots) to save the README's screenshots while the tests run.
SCREENSHOTS = os.environ.get("RAGLINE_UI_SCREENSHOTS")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set RAGLINE_CHROMIUM)"
    return None


@dataclass
class Watch:
    """What the page did that a test asserts on: requests leaving 127.0.0.1, script errors."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def settings(make_settings, stub_llm):
    """The live server answers chats with the stub LLM."""
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=20, llm_max_retries=0)


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser, watch: Watch) -> Iterator:
    """A fresh browser tab at phone-to-desktop-neutral 1280x800 that blocks and records every
    request to anywhere but 127.0.0.1, and records console errors and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)

    def guard(route) -> None:
        url = route.request.url
        host = urlparse(url).hostname
        if url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            watch.outside.append(url)
            route.abort()

    context.route("**/*", guard)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.on("console", lambda message: watch.errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: watch.errors.append(str(error)))
    yield tab
    context.close()


def snap(page, name: str) -> None:
    """Save a screenshot for the README when RAGLINE_UI_SCREENSHOTS names a folder."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))
