"""The monitoring report (`cds-service report --html FILE`) as the committee sees it: real hook calls and
feedback over three days, one live and one silent service on the same database, the page opened offline
in Debian's Chromium (any network request fails the test), its charts drawn, its figures right, axe-core clean."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from browser import screenshot  # the browser fixtures come from conftest.py
from builders import SELECT, TODAY, hook_request, service_request
from cds_service import cli, create_app, monitoring, storage
from cds_service.storage import audit

from databases import url  # noqa: F401  (the url fixture: SQLite, and PostgreSQL when configured)

OVERRIDE = {"code": "protocol", "system": "urn:cds-service:acr-leukemia-staging:override-reason",
            "display": "Required by the treatment protocol or a clinical trial"}
CT_CHEST_RULE = "all-child-initial-staging-asymptomatic-chest/ct-chest"
DAYS = [datetime(2026, 11, 30, 10, tzinfo=timezone.utc) + timedelta(days=i) for i in range(3)]


def app_on(url: str, **overrides):
    app = create_app({"database_url": url, **overrides})
    app.extensions["cds"].handler.today = lambda: TODAY
    return app


def flush(app) -> None:
    rt = app.extensions["cds"]
    rt.audit.flush()
    rt.handler.governance.flush()
    rt.handler.on_unmatched.flush()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Three days of calls and feedback; the report written by the command line. (path, figures)"""
    folder = tmp_path_factory.mktemp("monitoring")
    url = f"sqlite:///{folder / 'cds.db'}"
    live, silent = app_on(url), app_on(url, silent="statement/mr-brain")
    patch = pytest.MonkeyPatch()
    try:
        for n, day in enumerate(DAYS):
            patch.setattr(storage, "utcnow", lambda day=day: day)       # the day of the order counts
            patch.setattr(audit, "utcnow", lambda day=day: day)         # the day of the audit rows
            client = live.test_client()
            warned = []
            for i in range(2 + n):
                body = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request(f"ct{n}-{i}", "71250")]))
                warned.append(body.get_json()["cards"][0])
            for code in ("71046", "70450"):  # a rated radiograph, an unmatched CT head
                client.post(f"/cds-services/{SELECT}", json=hook_request([service_request("o", code)]))
            silent.test_client().post(f"/cds-services/{SELECT}", json=hook_request([service_request("mr", "70551")]))
            flush(live)
            flush(silent)
            entries = [{"card": warned[0]["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-12-01T10:00:00Z",
                        "acceptedSuggestions": [{"id": warned[0]["suggestions"][0]["uuid"]}]},
                       {"card": warned[1]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:01:00Z",
                        "overrideReason": {"reason": OVERRIDE}}]
            assert client.post(f"/cds-services/{SELECT}/feedback", json={"feedback": entries}).status_code == 200
    finally:
        patch.undo()
    path = folder / "report.html"
    assert cli.main(["report", "--database-url", url, "--html", str(path)]) == 0
    return path, monitoring.collect(live.extensions["cds"].store)


def test_the_figures_are_the_calls_and_the_feedback(report):
    _path, data = report
    assert [(d["day"], d["seen"], d["rated"], d["not-rated"], d["unmatched"], d["warnings"]) for d in data["days"]] == [
        ("2026-11-30", 5, 3, 1, 1, 2), ("2026-12-01", 6, 4, 1, 1, 3), ("2026-12-02", 7, 5, 1, 1, 4)]
    [ct] = [r for r in data["rules"] if r["rule"] == CT_CHEST_RULE]
    assert (ct["shown"], ct["accepted"], ct["overridden"], ct["no_feedback"], ct["suggestions_accepted"]) == (9, 3, 3, 3, 3)
    assert ct["override_rate"] == 0.5 and ct["override_reasons"][0]["code"] == "protocol"
    [mr] = [r for r in data["rules"] if r["rule"] == "statement/mr-brain"]
    assert (mr["decided"], mr["shown"], mr["no_feedback"]) == (3, 0, 0)  # silent: decided, never shown
    assert [(w["rule"], w["why"], w["count"]) for w in data["withheld"]] == [("statement/mr-brain", "silent", 3)]
    assert [(u["code"], u["count"]) for u in data["unmatched"]] == [("70450", 3)]


def test_the_report_shows_each_chart_offline_and_passes_axe(report, browser_page):
    path, _data = report
    html = path.read_text(encoding="utf-8")
    assert not any(fetch in html for fetch in ("<script", "<link", "<img", "src=", "url(", "@import"))
    requested = []
    browser_page.route("**/*", lambda route: (requested.append(route.request.url), route.abort())
                       if not route.request.url.startswith("file://") else route.continue_())
    browser_page.goto(path.as_uri())
    assert requested == []  # nothing but the file itself: it works with no network
    page = browser_page
    assert page.locator("h1").inner_text() == "Monitoring report"
    assert [h.inner_text() for h in page.locator("h2").all()] == [
        "Coverage: imaging orders per day", "Warnings per 100 imaging orders", "Feedback per rule",
        "Cards kept from the EHR (silent mode, rules off)", "Unmatched imaging order codes",
        "Repeat warnings not shown after an override"]
    # coverage: per day a rated, a not-rated and an unmatched segment; warnings: a bar per day
    assert page.locator("svg#coverage rect.bar").count() == 9
    assert page.locator("svg#warnings rect.bar").count() == 3
    assert page.locator("svg#feedback rect.bar").count() >= 3
    for chart in ("coverage", "warnings", "feedback"):
        box = page.locator(f"svg#{chart}").bounding_box()
        assert box["width"] > 300 and box["height"] > 100, chart
    figures = page.get_by_role("list", name="Figures for the whole period").inner_text()
    assert "18\nimaging orders seen" in figures and "67%\ncoverage" in figures and "50%\noverride rate, of the 6 cards with feedback" in figures
    rules = page.get_by_role("table", name="Cards per rule and their feedback")
    assert "Required by the treatment protocol or a clinical trial x3" in rules.inner_text()
    assert "statement/mr-brain" in page.get_by_role("table", name="Cards withheld per rule").inner_text()
    assert "over the cards with feedback" in page.locator("#feedback + p").inner_text()
    screenshot(page, "monitoring-report")
    from axe_playwright_python.sync_playwright import Axe
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def test_the_report_reads_the_same_on_each_database(url):
    """SQLite and PostgreSQL (when configured): days in UTC, warnings joined to their calls, silent cards."""
    app = app_on(url, silent="statement/mr-brain")
    client = app.test_client()
    card = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request("ct", "71250")])).get_json()["cards"][0]
    client.post(f"/cds-services/{SELECT}", json=hook_request([service_request("mr", "70551")]))
    flush(app)
    client.post(f"/cds-services/{SELECT}/feedback", json={"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:01:00Z",
         "overrideReason": {"reason": OVERRIDE}}]})
    data = monitoring.collect(app.extensions["cds"].store)
    today = storage.utcnow().date().isoformat()
    assert [(d["day"], d["seen"], d["rated"], d["not-rated"], d["warnings"]) for d in data["days"]] == [(today, 2, 1, 1, 1)]
    assert [(r["rule"], r["shown"], r["overridden"], r["override_rate"]) for r in data["rules"]] == [
        (CT_CHEST_RULE, 1, 1, 1.0), ("statement/mr-brain", 0, 0, None)]
    assert data["releases"] == [(app.extensions["cds"].knowledge.release.label, 2)]
    assert "<svg" in monitoring.render(data)
    app.extensions["cds"].store.close()
