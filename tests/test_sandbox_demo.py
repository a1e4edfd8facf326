"""The real CDS Hooks Sandbox (a local build, in Debian's Chromium) with the demo FHIR endpoint as its FHIR
server: the in-scope demo girl gets the CT chest warning, a child with AML does not."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from browser import screenshot  # the browser fixtures come from conftest.py
from test_demo import live

SANDBOX = Path(__file__).resolve().parents[2] / "shared" / "tools" / "cds-hooks-sandbox" / "build"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sandbox_url():
    if not (SANDBOX / "index.html").exists():
        pytest.skip("the CDS Hooks Sandbox build (shared/tools/cds-hooks-sandbox) is not beside the repository")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=SANDBOX))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join(5)


def open_pama(page, sandbox_url: str, base: str, patient: str) -> None:
    query = {"serviceDiscoveryURL": f"{base}/cds-services", "fhirServiceUrl": f"{base}/demo/fhir",
             "patientId": patient, "screen": "pama", "hook": "order-select"}
    page.goto(sandbox_url + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()))
    page.get_by_text(f"ID: {patient}").wait_for(timeout=20_000)  # the patient banner, read from the demo server
    search = page.locator("input").first
    search.fill("71260")
    # react-select announces the focused option; Enter chooses it (as a person would with the keyboard)
    page.locator("#aria-context", has_text="Computed tomography, thorax; with contrast").wait_for(timeout=10_000)
    page.keyboard.press("Enter")
    page.get_by_text("Computed tomography, thorax; with contrast material(s)").last.wait_for(timeout=10_000)


def test_sandbox_shows_the_warning_for_the_in_scope_demo_girl(app, sandbox_url, browser_page):
    page = browser_page
    with live(app) as base:
        open_pama(page, sandbox_url, base, "demo-girl-7")
        page.get_by_text("PAMA Rating: not-appropriate").wait_for(timeout=20_000)
        summary = page.get_by_text("CT chest: Usually not appropriate for initial staging of asymptomatic pediatric ALL")
        summary.first.wait_for(timeout=10_000)
        assert page.get_by_text("7-year-old girl").count() >= 1
        assert page.get_by_role("button", name="Order chest radiograph instead (Chest X-ray, 2 views)").count() == 1
        screenshot(page, "sandbox-demo-girl-ct-chest")


def test_sandbox_shows_no_warning_for_the_demo_child_with_aml(app, sandbox_url, browser_page):
    page = browser_page
    with live(app) as base:
        open_pama(page, sandbox_url, base, "demo-aml")
        page.get_by_text("PAMA Rating: no-criteria-apply").wait_for(timeout=20_000)
        assert page.get_by_text("Usually not appropriate").count() == 0
        screenshot(page, "sandbox-demo-aml-ct-chest")
