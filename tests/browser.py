"""Debian's Chromium driven by Playwright, for tests that look at what a person sees.

Playwright's own browser download cannot work here, so it launches /usr/bin/chromium (installed
by .ci/browser.sh). Use: `def test_x(browser_page): browser_page.goto(url)`, with the fixtures
below (conftest.py makes them available to every test module; `screenshot` is imported from here)."""
from __future__ import annotations

import os

import pytest

CHROMIUM = os.environ.get("CDS_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = os.environ.get("CDS_TEST_ARTIFACTS", os.path.join(os.path.dirname(__file__), "..", "test-artifacts"))


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (bash .ci/browser.sh installs it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def browser_page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> str:
    """Keep a screenshot as a test artifact (test-artifacts/NAME.png); returns its path."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path
