"""The site code map: local order codes rated like the knowledge's own, site-coded suggestions, start-up
checks that name the line, and the count of imaging-looking orders that matched nothing."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

import builders as b
from cds_service import create_app, sitecodes
from cds_service.cli import main
from cds_service.sitecodes import SiteCodeError

# An Epic-style procedure catalogue (EAP) system: the customer's OID under Epic's root 1.2.840.114350.
EAP = "urn:oid:1.2.840.114350.1.13.861.1.7.2.696580"
LOCAL_OID = "urn:oid:2.16.840.1.999999.5.1"
MAP = f"""system,code,procedure,display
{EAP},IMG1101,ct-chest,CT CHEST W CONTRAST
{EAP},IMG2001,xr-chest,XR CHEST 2 VIEWS
# a comment line, and a blank line, are skipped

{LOCAL_OID},CTAP-IV,ct-abd-pelvis-iv,
"""


def site_app(tmp_path, text: str = MAP, **settings):
    path = tmp_path / "site-codes.csv"
    path.write_text(text)
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'cds.db'}", "site_codes": str(path), **settings})
    app.extensions["cds"].handler.today = lambda: b.TODAY
    return app


def local_order(code: str, system: str = EAP, sid: str = "order-1") -> dict:
    order = b.service_request(sid, code=code, system=system)
    order["code"]["coding"][0]["display"] = "local catalogue entry"
    return order


def test_epic_local_code_for_ct_chest_gets_the_warning_and_a_site_coded_suggestion(tmp_path):
    client = site_app(tmp_path).test_client()
    response = client.post(f"/cds-services/{b.SELECT}", json=b.hook_request([local_order("IMG1101")]))
    [card] = b.warning_cards(response)
    assert card["summary"].startswith("CT chest: Usually not appropriate")
    [suggestion] = card["suggestions"]
    coding = suggestion["actions"][0]["resource"]["code"]["coding"]
    assert coding[0] == {"system": EAP, "code": "IMG2001", "display": "XR CHEST 2 VIEWS"}
    assert {"system": b.CPT, "code": "71046"} in [{k: c[k] for k in ("system", "code")} for c in coding[1:]]
    assert b.ratings(response) == {"order-1": "not-appropriate"}


def test_without_the_map_the_local_code_gets_nothing(tmp_path, client):
    response = client.post(f"/cds-services/{b.SELECT}", json=b.hook_request([local_order("IMG1101")]))
    assert b.cards(response) == [] and b.ratings(response) == {}


def test_a_cpt_coded_order_keeps_its_standard_suggestion_with_the_site_code_first(tmp_path):
    client = site_app(tmp_path).test_client()
    response = client.post(f"/cds-services/{b.SELECT}", json=b.hook_request([b.service_request(code="71260")]))
    [card] = b.warning_cards(response)
    coding = card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"]
    assert [c["code"] for c in coding] == ["IMG2001", "71046"]


def test_a_boy_with_a_local_ct_abdomen_code_gets_the_scrotal_us_suggestion_in_cpt(tmp_path):
    client = site_app(tmp_path).test_client()
    body = b.hook_request([local_order("CTAP-IV", LOCAL_OID)], pat=b.patient(gender="male"))
    [card] = b.warning_cards(client.post(f"/cds-services/{b.SELECT}", json=body))
    coding = card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"]
    assert coding[0]["system"] == b.CPT and coding[0]["code"] == "76870"  # the map has no code for it


@pytest.mark.parametrize("text, message", [
    (f"system,code,procedure\n{EAP},A1,ct-chest\n{EAP},A2,ct-head\n", "line 3: unknown procedure 'ct-head'"),
    (f"system,code,procedure\n{EAP},A1,ct-chest\n\n{EAP},A1,xr-chest\n", "line 4: " + EAP + " A1 is already mapped on line 2"),
    ("system,code,procedure\nEpic EAP,A1,ct-chest\n", "line 2: system 'Epic EAP' is not an absolute URI"),
    (f"system,code,procedure\n{b.CPT},71250,xr-chest\n", "line 2: http://www.ama-assn.org/go/cpt is a standard vocabulary"),
    (f"system,code,procedure\n{EAP},,ct-chest\n", "line 2: the code is empty"),
    (f"code,system,procedure\n{EAP},A1,ct-chest\n", "line 1: the header must be system,code,procedure,display"),
])
def test_a_bad_map_refuses_to_start_naming_the_line(tmp_path, text, message):
    with pytest.raises(SiteCodeError) as raised:
        site_app(tmp_path, text)
    assert str(raised.value) == f"site-codes.csv {message}" or str(raised.value).startswith(f"site-codes.csv {message}")


def test_a_missing_map_file_refuses_to_start(tmp_path):
    with pytest.raises(SiteCodeError, match="site code map nowhere.csv: cannot be read"):
        create_app({"database_url": f"sqlite:///{tmp_path / 'cds.db'}", "site_codes": str(tmp_path / "nowhere.csv")})


def test_unmatched_imaging_looking_orders_are_counted_in_metrics_and_report(tmp_path, capsys):
    app = site_app(tmp_path)
    client = app.test_client()
    orders = [b.service_request("o1", code="72132"),           # CPT lumbar spine CT: radiology, not rated
              local_order("IMG9999", sid="o2"),                # the site's catalogue, not mapped yet
              b.service_request("o3", code="85025"),           # CPT blood count: not imaging
              local_order("IMG1101", sid="o4")]                # mapped
    for _ in range(2):
        assert client.post(f"/cds-services/{b.SIGN}", json=b.hook_request(orders, hook="order-sign")).status_code == 200
    app.extensions["cds"].handler.on_unmatched.flush()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'cds_unmatched_imaging_orders_total{{code="72132",system="{b.CPT}"}}' in metrics
    assert f'cds_unmatched_imaging_orders_total{{code="IMG9999",system="{EAP}"}}' in metrics
    assert 'code="85025"' not in metrics and 'code="IMG1101"' not in metrics
    assert main(["report", "--database-url", f"sqlite:///{tmp_path / 'cds.db'}"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert [b.CPT, "72132", "2"] in lines and [EAP, "IMG9999", "2"] in lines
    assert "85025" not in out


def test_made_up_codes_cannot_grow_the_metrics_or_the_table_without_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(sitecodes, "MAX_TRACKED", 5)
    app = site_app(tmp_path)
    client = app.test_client()
    orders = [local_order(f"MADE-UP-{i}", sid=f"o{i}") for i in range(12)]
    assert client.post(f"/cds-services/{b.SIGN}", json=b.hook_request(orders, hook="order-sign")).status_code == 200
    app.extensions["cds"].handler.on_unmatched.flush()
    metrics = client.get("/metrics").get_data(as_text=True)
    series = [line for line in metrics.splitlines() if line.startswith("cds_unmatched_imaging_orders_total{")]
    assert sum('code="MADE-UP-' in line for line in series) == 5
    assert 'cds_unmatched_imaging_orders_total{code="(other)",system="(other systems and codes)"} 7.0' in metrics
    with app.extensions["cds"].store.engine.connect() as conn:
        rows = conn.execute(sa.select(sitecodes.unmatched_orders.c.code, sitecodes.unmatched_orders.c["count"])).all()
    assert len(rows) == 6 and ("(other)", 7) in rows
