"""The cards in the real CDS Hooks Sandbox (prebuilt, served from ../shared/tools/cds-hooks-sandbox),
in Debian's Chromium on a 1366x768 laptop screen: the warning card fits the screen below the
Sandbox's header without scrolling, and each card's links open their guidance pages.

The Sandbox reads the patient from a small FHIR server on loopback (this test's), calls the
service on loopback, and signs its calls with its public key (accepted in development)."""
from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask, jsonify
from werkzeug.serving import make_server

from browser import screenshot  # the browser fixtures come from conftest.py
from builders import all_condition, born, patient
from cds_service import create_app

BUILD = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "cds-hooks-sandbox" / "build"
LAPTOP = {"width": 1366, "height": 768}
CT_CHEST = "Computed tomography, thorax; without contrast material"  # CPT 71250 in the Sandbox's list

pytestmark = pytest.mark.skipif(not (BUILD / "index.html").exists(),
                                reason="the prebuilt CDS Hooks Sandbox (../shared/tools/cds-hooks-sandbox) is absent")


def fhir_server(gender: str) -> Flask:
    """The patient's record as the Sandbox reads it: a child with B-cell ALL diagnosed two days ago."""
    app = Flask("sandbox-fhir")

    @app.after_request
    def cors(response):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = "*"
        return response

    def searchset(*resources):
        return jsonify({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]})

    @app.get("/metadata")
    def metadata():
        return jsonify({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                        "fhirVersion": "4.0.1", "format": ["json"], "date": "2026-01-01"})

    @app.get("/Patient/<pid>")
    def read_patient(pid):
        return jsonify(patient(pid, gender, born(7)))

    @app.get("/Patient")
    def search_patients():
        return searchset(patient("pat1", gender, born(7)))

    @app.get("/Condition")
    def conditions():
        return searchset(all_condition(days_ago=2))

    @app.get("/MedicationRequest")
    def medications():
        return searchset()

    return app


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started = []

    def serve(app):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    service = serve(create_app({"database_url": f"sqlite:///{tmp_path_factory.mktemp('db') / 'cds.db'}"}))
    fhir = {gender: serve(fhir_server(gender)) for gender in ("female", "male")}
    static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(BUILD)))
    threading.Thread(target=static.serve_forever, daemon=True).start()
    started.append(static)
    yield {"service": service, "fhir": fhir, "sandbox": f"http://127.0.0.1:{static.server_port}"}
    for server in started:
        server.shutdown()


def sandbox_page(browser, servers, gender: str):
    context = browser.new_context(viewport=LAPTOP)
    # The Sandbox also tries its public default services: nothing leaves this machine.
    context.route(re.compile(r"^(?!(http|ws)://127\.0\.0\.1[:/]).*"), lambda route: route.abort())
    page = context.new_page()
    url = (f"{servers['sandbox']}/?serviceDiscoveryURL={quote(servers['service'] + '/cds-services', safe='')}"
           f"&fhirServiceUrl={quote(servers['fhir'][gender], safe='')}&patientId=pat1&screen=pama&hook=order-select")
    page.goto(url)
    page.get_by_text("Search orders").click()
    return context, page


def order(page, study: str):
    page.keyboard.type(study)
    page.locator("[id*='-option-']").get_by_text(study, exact=True).click()
    return first_card(page, "CT chest: ")


def first_card(page, summary: str):
    card = page.locator("[class*='decision-card']", has_text=summary).first
    card.wait_for(timeout=15000)
    return card


def header_bottom(page) -> float:
    return page.evaluate("Math.max(...[...document.querySelectorAll('[class*=\"header__\"]')]"
                         ".map(e => e.getBoundingClientRect().bottom))")


def test_the_warning_card_fits_a_laptop_screen_and_its_links_open_their_pages(browser, servers):
    context, page = sandbox_page(browser, servers, "female")
    try:
        card = order(page, CT_CHEST)
        assert "CT chest: Usually not appropriate" in card.inner_text()
        assert "Relied on: 7-year-old girl" in card.inner_text()
        assert "Condition/" not in card.inner_text()
        card.scroll_into_view_if_needed()
        room = LAPTOP["height"] - header_bottom(page)
        height = card.bounding_box()["height"]
        screenshot(page, "sandbox-warning-card")
        assert height <= room, f"the warning card is {height:.0f}px tall; {room:.0f}px are visible below the header"
        assert page.get_by_text("PAMA Rating: not-appropriate").is_visible()
        for label, heading in [("Full guidance: CT chest", "CT chest"),
                               ("Ratings table for this scenario",
                                "Child with newly diagnosed ALL, asymptomatic, initial staging: chest and mediastinum")]:
            with context.expect_page() as opened:
                card.get_by_role("button", name=label).click()
            guidance = opened.value
            guidance.wait_for_load_state()
            assert guidance.locator("h1").inner_text() == heading
            guidance.close()
    finally:
        context.close()


def test_the_accepted_suggestion_gives_the_radiograph_card_which_fits_and_keeps_the_pause(browser, servers):
    """The Sandbox lists only advanced imaging: the radiograph is reached by accepting the suggestion."""
    context, page = sandbox_page(browser, servers, "male")
    try:
        order(page, CT_CHEST).get_by_role("button", name="Order chest radiograph instead (Chest X-ray, 2 views)").click()
        card = first_card(page, "Chest radiograph: ")
        text = card.inner_text()
        assert "Chest radiograph: May be appropriate (Disagreement)" in text
        assert "PAUSE before any sedation" in text
        card.scroll_into_view_if_needed()
        assert card.bounding_box()["height"] <= LAPTOP["height"] - header_bottom(page)
        screenshot(page, "sandbox-radiograph-card")
        assert page.get_by_text("PAMA Rating: appropriate").is_visible()
    finally:
        context.close()
