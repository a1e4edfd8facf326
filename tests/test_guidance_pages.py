"""The guidance pages in a real browser (Playwright driving Debian's Chromium): what a person sees on
each page type, on a laptop and a phone, and an axe-core accessibility check. One screenshot per
page type is kept in test-artifacts/."""
from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from browser import screenshot  # the browser fixtures come from conftest.py
from cds_service import create_app

CHEST = "all-child-initial-staging-asymptomatic-chest"
MALE = "all-child-male-initial-staging-asymptomatic"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """The service on 127.0.0.1 and a port the OS picks, for the browser."""
    app = create_app({"database_url": f"sqlite:///{tmp_path_factory.mktemp('db') / 'cds.db'}"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def no_axe_violations(page) -> None:
    from axe_playwright_python.sync_playwright import Axe
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def open_page(page, url: str):
    response = page.goto(url)
    assert response.status == 200
    return page


def test_procedure_page_of_a_warned_study(browser_page, base_url):
    page = open_page(browser_page, f"{base_url}/guidance/procedures/ct-chest")
    assert page.locator("h1").inner_text() == "CT chest"
    assert page.title().startswith("CT chest")
    ratings = page.get_by_role("table", name="ACR rating of CT chest by variant")
    assert ratings.get_by_role("columnheader").all_inner_texts() == ["Variant", "ACR rating", "Source"]
    assert "Usually not appropriate" in ratings.inner_text()
    assert page.get_by_role("heading", name="What to do instead").is_visible()
    assert page.get_by_role("link", name="Chest radiograph").first.is_visible()
    assert page.get_by_role("heading", name="Pitfalls").is_visible()
    codes = page.get_by_role("table", name="Order codes recognised as CT chest")
    assert "71250" in codes.inner_text() and "CT chest, without contrast" in codes.inner_text()
    assert "3-10 mSv" in page.locator("main").inner_text()
    screenshot(page, "guidance-procedure")
    no_axe_violations(page)


def test_procedure_page_of_the_radiograph_shows_the_pause_and_the_results_workflow(browser_page, base_url):
    page = open_page(browser_page, f"{base_url}/guidance/procedures/xr-chest")
    alert = page.locator(".must-see")
    assert alert.is_visible() and "PAUSE before any sedation" in alert.inner_text()
    assert page.get_by_role("heading", name="What to do with the result").is_visible()
    workflow = page.locator("dl").inner_text()
    assert "Normal" in workflow and "Positive" in workflow and "Indeterminate" in workflow
    assert "May be appropriate (Disagreement)" in page.locator("main").inner_text()
    no_axe_violations(page)


def test_procedure_page_without_a_rating_says_so(browser_page, base_url):
    page = open_page(browser_page, f"{base_url}/guidance/procedures/mr-brain")
    main = page.locator("main").inner_text()
    assert "Not an ACR rating" in main and "lumbar puncture" in main
    assert "Usually not appropriate" not in main
    assert page.locator("main strong", has_text="Not an ACR rating.").count() == 1  # **bold** rendered, not shown
    no_axe_violations(page)


def test_variant_page_has_its_table_of_ratings_and_radiation(browser_page, base_url):
    page = open_page(browser_page, f"{base_url}/guidance/variants/{MALE}")
    assert page.locator("h1").inner_text() == "Male child with newly diagnosed ALL, asymptomatic, initial staging"
    table = page.get_by_role("table", name="ACR rating and pediatric relative radiation level of each study")
    assert table.get_by_role("columnheader").all_inner_texts() == [
        "Study", "ACR rating", "Radiation", "Suggested instead", "Source"]
    rows = {row.get_by_role("rowheader").inner_text(): row.inner_text() for row in table.locator("tbody tr").all()}
    assert set(rows) == {"Chest radiograph", "FDG-PET/CT", "Scrotal ultrasound", "CT abdomen/pelvis with IV contrast"}
    assert "Usually not appropriate" in rows["CT abdomen/pelvis with IV contrast"]
    assert "Scrotal ultrasound" in rows["CT abdomen/pelvis with IV contrast"]  # suggested instead
    assert "May be appropriate (Disagreement)" in rows["Scrotal ultrasound"] and "0 mSv" in rows["Scrotal ultrasound"]
    assert page.get_by_role("heading", name="Who is not").is_visible()
    screenshot(page, "guidance-variant")
    no_axe_violations(page)


def test_index_page_names_the_scope_and_links_every_page(browser_page, base_url):
    page = open_page(browser_page, f"{base_url}/guidance/")
    assert page.get_by_role("heading", name="When this guidance applies").is_visible()
    page.get_by_role("link", name="Child with newly diagnosed ALL, asymptomatic, initial staging: chest and mediastinum").click()
    assert page.url.endswith(f"/guidance/variants/{CHEST}")
    page.go_back()
    page.get_by_role("link", name="MRI chest").click()
    assert page.locator("h1").inner_text() == "MRI chest"
    page.go_back()
    screenshot(page, "guidance-index")
    no_axe_violations(page)


@pytest.mark.parametrize("path", ["/guidance/", f"/guidance/variants/{CHEST}", "/guidance/procedures/xr-chest"])
def test_pages_fit_a_phone_without_sideways_scrolling(browser, base_url, path):
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True)
    try:
        page = open_page(context.new_page(), base_url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} is {width}px wide on a 375px phone"
        if path.endswith("xr-chest"):
            screenshot(page, "guidance-procedure-phone")
    finally:
        context.close()


def test_pages_print_without_the_navigation_and_with_link_addresses(browser_page, base_url):
    page = open_page(browser_page, f"{base_url}/guidance/procedures/ct-chest")
    page.emulate_media(media="print")
    assert page.locator("header").is_visible() is False
    after = page.evaluate("""getComputedStyle(document.querySelector('footer a[href^="http"]'), '::after').content""")
    assert "acsearch.acr.org" in after
    assert page.pdf()[:4] == b"%PDF"


def test_an_unknown_page_is_a_page_that_says_so(browser_page, base_url):
    response = browser_page.goto(f"{base_url}/guidance/procedures/no-such-study")
    assert response.status == 404
    assert browser_page.locator("h1").inner_text() == "No such guidance page"


def test_hazard_log_page_lists_each_hazard_with_its_controls_and_risks(browser_page, base_url):
    page = open_page(browser_page, f"{base_url}/guidance/hazard-log")
    assert page.locator("h1").inner_text() == "Hazard log"
    summary = page.get_by_role("table", name="Each hazard and its risk before and after its controls")
    assert summary.get_by_role("columnheader").all_inner_texts() == ["Hazard", "Initial risk", "Controls", "Residual risk"]
    assert summary.locator("tbody tr").count() >= 8
    page.get_by_role("link", name="H03").click()
    assert page.url.endswith("#H03")
    assert "tests/test_fail_safe.py::test_a_paginated_prefetch_without_fhir_server_withholds" in page.locator("main").inner_text()
    screenshot(page, "guidance-hazard-log")
    no_axe_violations(page)
