"""Go-live governance as the EHR, the audit and the committee see it: the knowledge release on every card,
audit row, discovery entry and guidance page; silent mode (CDS_SILENT) and the site's rule switches
(CDS_RULES_OFF); the imaging orders per day by outcome."""
from __future__ import annotations

import json
import shutil

import pytest
import sqlalchemy as sa

from builders import CPT, SELECT, TODAY, hook_request, ratings, service_request
from cds_service import cli, config, create_app, governance, storage
from cds_service.knowledge import KnowledgeError, default_directory, load

import tomllib
from cds_service.knowledge import default_directory as _knowledge_dir

RELEASE = tomllib.loads((_knowledge_dir() / "release.toml").read_text())["version"]  # as released

CT_CHEST_RULE = "all-child-initial-staging-asymptomatic-chest/ct-chest"
XR_CHEST_RULE = "all-child-initial-staging-asymptomatic-chest/xr-chest"


def make_app(tmp_path, name="cds", **overrides):
    app = create_app({"database_url": f"sqlite:///{tmp_path / name}.db", **overrides})
    app.extensions["cds"].handler.today = lambda: TODAY
    return app


def calls() -> list[dict]:
    """A CT chest (a warning), a chest radiograph (rated appropriate), an MRI brain (not rated: a statement),
    a CT head (an imaging code the knowledge does not know), each in its own call, and the CT chest again."""
    return [hook_request([service_request("o1", code)]) for code in ("71250", "71046", "70551", "70450", "71250")]


def flush(app) -> storage.Store:
    rt = app.extensions["cds"]
    rt.audit.flush()
    rt.handler.governance.flush()
    rt.handler.on_unmatched.flush()
    return rt.store


# -- the knowledge release ---------------------------------------------------------------------

def test_every_card_and_audit_row_names_the_knowledge_release(app, client, k):
    body = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request("o1", "71250")])).get_json()
    [card] = body["cards"]
    assert card["source"]["topic"] == {"system": "urn:cds-service:acr-leukemia-staging:rule", "code": CT_CHEST_RULE,
                                       "display": card["source"]["topic"]["display"],
                                       "version": f"{RELEASE}+{k.release.digest[:12]}"}
    client.post(f"/cds-services/{SELECT}", data="{", content_type="application/json")  # a 400 is audited too
    with flush(app).engine.connect() as conn:
        versions = conn.execute(sa.select(storage.hook_calls.c.status, storage.hook_calls.c.knowledge_version)
                                .order_by(storage.hook_calls.c.id)).all()
    assert versions == [(200, k.release.label), (400, k.release.label)]


def test_discovery_names_the_cds_hooks_version_and_the_knowledge_release(client, k):
    for service in client.get("/cds-services").get_json()["services"]:
        assert service["version"] == "2.0.1"
        assert service["extension"] == {"knowledge-release": {"version": RELEASE, "digest": k.release.digest}}


def test_the_guidance_pages_name_the_release(client, k):
    for path in ("/guidance/", "/guidance/procedures/ct-chest"):
        page = client.get(path).get_data(as_text=True)
        assert f"Knowledge release {RELEASE}, digest <code title=\"SHA-256 of the knowledge files\">{k.release.short}</code>" \
            in page


def test_start_up_logs_the_release(tmp_path, log_lines, k):
    make_app(tmp_path)
    [line] = [x for x in log_lines() if x.get("event") == "knowledge"]
    assert (line["release"], line["digest"], line["procedures"]) == (RELEASE, k.release.digest, len(k.procedures))


def test_the_digest_follows_every_byte_of_the_knowledge(tmp_path, k):
    copy = tmp_path / "knowledge"
    shutil.copytree(default_directory(), copy)
    assert load(copy).release == k.release
    policies = copy / "policies.toml"
    policies.write_text(policies.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    changed = load(copy).release
    assert changed.version == RELEASE and changed.digest != k.release.digest


@pytest.mark.parametrize("text, message", [
    ('released = "2026-12-06"\n', "release.toml: version: missing"),
    ('version = "latest"\n', "release.toml: version: 'latest' is not a release version such as 1.0.0"),
])
def test_a_release_without_a_usable_version_does_not_load(tmp_path, text, message):
    copy = tmp_path / "knowledge"
    shutil.copytree(default_directory(), copy)
    (copy / "release.toml").write_text(text, encoding="utf-8")
    with pytest.raises(KnowledgeError, match=message):
        load(copy)


# -- silent mode ---------------------------------------------------------------------------------

def run(app) -> tuple[list[dict], str]:
    client = app.test_client()
    bodies = [client.post(f"/cds-services/{SELECT}", json=body).get_json() for body in calls()]
    return bodies, cli.full_report(flush(app))


def test_silent_mode_shows_nothing_and_reports_the_same_counts_as_live(tmp_path):
    live_bodies, live_report = run(make_app(tmp_path, "live"))
    silent_app = make_app(tmp_path, "silent", silent="all")
    silent_bodies, silent_report = run(silent_app)
    assert [len(b["cards"]) for b in live_bodies] == [1, 1, 1, 0, 1]
    assert silent_bodies == [{"cards": []}] * 5  # no card, no systemAction
    # the same rules, cards, orders per day and unmatched codes; the silent report adds what was withheld
    assert silent_report.startswith(live_report.split("Cards withheld from the EHR")[0])
    assert live_report.endswith("Cards withheld from the EHR (silent mode, rules off): none.")
    assert silent_report.endswith("Cards withheld from the EHR (would have been shown):\n"
                                  f"  {CT_CHEST_RULE} [warning] x2: silent mode\n"
                                  f"  {XR_CHEST_RULE} [info] x1: silent mode\n"
                                  "  statement/mr-brain [info] x1: silent mode")
    with silent_app.extensions["cds"].store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(storage.issued_cards)).scalar() == 4


def test_silent_rules_withhold_their_card_and_rating_only(tmp_path):
    app = make_app(tmp_path, silent=f"{CT_CHEST_RULE}, statement/mr-brain")
    body = hook_request([service_request("ct", "71250"), service_request("xr", "71046")])
    response = app.test_client().post(f"/cds-services/{SELECT}", json=body)
    assert [c["source"]["topic"]["code"] for c in response.get_json()["cards"]] == [XR_CHEST_RULE]
    assert ratings(response) == {"xr": "appropriate"}
    data = governance.report(flush(app))
    assert [(w["rule"], w["why"], w["count"]) for w in data["withheld"]] == [(CT_CHEST_RULE, "silent", 1)]


def test_silent_mode_refuses_a_rule_the_knowledge_does_not_have(tmp_path):
    with pytest.raises(config.ConfigError, match="CDS_SILENT names unknown rule.s. ct-chest: use 'all' or rule ids"):
        make_app(tmp_path, silent="ct-chest")


# -- rules switched off by the site ------------------------------------------------------------

def test_a_rule_switched_off_withholds_its_card_keeps_the_rating_and_reports_the_reason(tmp_path):
    off = tmp_path / "rules-off.toml"
    off.write_text(f'[[off]]\nrule = "{CT_CHEST_RULE}"\nreason = "Local protocol: CT chest at diagnosis '
                   f'(oncology committee, 2026-11-30)"\n', encoding="utf-8")
    app = make_app(tmp_path, rules_off=str(off))
    client = app.test_client()
    response = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request("ct", "71250")]))
    assert response.get_json()["cards"] == []
    assert ratings(response) == {"ct": "not-appropriate"}  # the PAMA rating is still sent
    xr = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request("xr", "71046")]))
    assert len(xr.get_json()["cards"]) == 1
    assert cli.full_report(flush(app)).endswith(
        f"  {CT_CHEST_RULE} [warning] x1: rule off: Local protocol: CT chest at diagnosis (oncology committee, "
        "2026-11-30)")


@pytest.mark.parametrize("text, message", [
    ('[[off]]\nrule = "ct-chest"\nreason = "x"\n', r"off\[0\].rule 'ct-chest' is not a rule of this knowledge"),
    (f'[[off]]\nrule = "{CT_CHEST_RULE}"\n', rf"off\[0\] \({CT_CHEST_RULE}\) needs a reason"),
    ("[[off]\n", "not valid TOML"),
])
def test_a_rules_off_file_that_cannot_be_applied_stops_the_start(tmp_path, text, message):
    off = tmp_path / "rules-off.toml"
    off.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError, match=message):
        make_app(tmp_path, rules_off=str(off))


# -- imaging orders per day ----------------------------------------------------------------------

def test_every_imaging_order_is_counted_by_outcome(tmp_path):
    app = make_app(tmp_path)
    run(app)
    days = governance.report(flush(app))["days"]
    assert days == {storage.utcnow().date().isoformat(): {"rated": 3, "not-rated": 1, "withheld": 0, "unmatched": 1}}
    unread = hook_request([service_request("o1", "71250", CPT)])
    unread["prefetch"]["conditions"]["entry"].append("junk")  # an entry that cannot be read withholds the rating
    assert "withheld" in app.test_client().post(f"/cds-services/{SELECT}", json=unread).get_json()["cards"][0]["summary"]
    [counts] = governance.report(flush(app))["days"].values()
    assert counts == {"rated": 3, "not-rated": 1, "withheld": 1, "unmatched": 1}


def test_explain_names_the_cards_kept_from_the_ehr(tmp_path, monkeypatch, capsys):
    request = tmp_path / "request.json"
    request.write_text(json.dumps(hook_request([service_request("ct", "71250")])), encoding="utf-8")
    monkeypatch.setenv("CDS_SILENT", "all")
    assert cli.main(["explain", str(request)]) == 0
    out = capsys.readouterr().out
    assert f"   kept from the EHR: {CT_CHEST_RULE} (silent mode, CDS_SILENT)" in out and "   no cards" in out
