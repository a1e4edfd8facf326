""""Why no card?": `cds-service explain` and the development endpoint trace the decision step by step."""
from __future__ import annotations

import json

import responses

import builders as b
from cds_service import create_app
from cds_service.cli import main
from tokens import Client


def run_explain(tmp_path, capsys, body, *flags) -> tuple[int, str]:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    code = main(["explain", str(path), *flags])
    return code, capsys.readouterr().out


def symptomatic_request() -> dict:
    return b.hook_request([b.service_request(code="71260")],
                          conditions=[b.all_condition(), b.condition("c-cough", "49727002", display="Cough")])


def test_explain_prints_the_trace_of_a_silenced_request_and_names_the_cause(tmp_path, capsys):
    code, out = run_explain(tmp_path, capsys, symptomatic_request())
    assert code == 0
    assert "order-1: recognised as ct-chest by CPT 71260" in out
    assert "age: 7 years on" in out and "sex: female" in out
    assert "all: B-cell acute lymphoblastic leukemia (SNOMED CT 277571004) from Condition/all-1; confirmed, active" in out
    assert "symptom: Cough (SNOMED CT 49727002) from Condition/c-cough" in out
    assert "[x] symptomatic" in out and "[ ] adult" in out and "[ ] not-new" in out
    assert "in scope: no" in out
    assert "card [warning]" not in out
    why = out.strip().splitlines()[-1]
    assert why.startswith("Why: ") and "does not apply" in why and "cough" in why.lower()


def test_explain_json_is_the_same_trace_for_tools(tmp_path, capsys):
    code, out = run_explain(tmp_path, capsys, symptomatic_request(), "--json")
    x = json.loads(out)
    assert code == 0 and x["service"] == b.SELECT
    assert x["orders"] == [{"id": "order-1", "recognised": True, "procedure": "ct-chest", "matched": "CPT 71260",
                            "stated_reasons": [], "for_staging": None}]
    assert x["patient"]["age"] == 7 and x["patient"]["sex"] == "female"
    found = [e["id"] for e in x["exclusions"] if e["found"]]
    assert found == ["symptomatic"]
    assert {e["kind"] for e in x["evidence"]} == {"all", "symptom"}
    assert x["scope"]["applies"] is False and x["findings"] == []
    assert all(c["indicator"] == "info" for c in x["cards"])
    assert x["ratings"] == {"order-1": "no-criteria-apply"}


def test_explain_of_an_in_scope_request_shows_the_rating_and_the_card(tmp_path, capsys):
    code, out = run_explain(tmp_path, capsys, b.hook_request([b.service_request(code="71260")]), "--json")
    x = json.loads(out)
    assert x["scope"]["applies"] is True
    assert x["findings"][0]["rating"] == "Usually not appropriate" and x["findings"][0]["alternative"] == "xr-chest"
    [card] = x["cards"]
    assert card["indicator"] == "warning" and card["suggestions"] == ["Order chest radiograph instead (Chest X-ray, 2 views)"]
    assert x["ratings"] == {"order-1": "not-appropriate"}
    assert x["conclusion"] == "In scope: CT chest: Usually not appropriate."


def test_explain_names_an_order_nobody_knows(tmp_path, capsys):
    code, out = run_explain(tmp_path, capsys, b.hook_request([b.service_request(code="85025")]))
    assert code == 0
    assert "order-1: not recognised" in out
    assert "no selected order is an imaging study" in out.splitlines()[-1]


def test_explain_names_the_gap_when_the_rating_is_withheld(tmp_path, capsys):
    body = b.hook_request([b.service_request(code="71260")])
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": "https://ehr.example.org/fhir/Condition?page=2"}]
    code, out = run_explain(tmp_path, capsys, body)
    assert "5. Data that could not be read\n   - Condition (unread):" in out
    assert out.splitlines()[-1].startswith("Why: Rating withheld")


def test_explain_refuses_what_the_service_refuses(tmp_path, capsys):
    body = b.hook_request([b.service_request()])
    del body["context"]["patientId"]
    code, out = run_explain(tmp_path, capsys, body)
    assert code == 2 and out.strip() == "Why: Refused (HTTP 400): 'context.patientId' is required"


def test_development_endpoint_gives_the_explanation(client):
    response = client.post(f"/cds-services/{b.SELECT}/explain", json=symptomatic_request())
    assert response.status_code == 200
    x = response.get_json()
    assert [e["id"] for e in x["exclusions"] if e["found"]] == ["symptomatic"]
    wrong = client.post(f"/cds-services/{b.SIGN}/explain", json=symptomatic_request())
    assert wrong.status_code == 400 and wrong.get_json()["resourceType"] == "OperationOutcome"


def test_development_endpoint_never_reads_a_metadata_address(client):
    body = b.hook_request([b.service_request(code="71250")], prefetch=False,
                          fhir_server="http://169.254.169.254/latest")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as network:
        response = client.post(f"/cds-services/{b.SELECT}/explain", json=body)
    assert response.status_code == 403 and "metadata" in response.get_json()["issue"][0]["diagnostics"]
    assert len(network.calls) == 0


def test_production_has_no_explain_endpoint(tmp_path):
    trusted = Client(tmp_path)
    app = create_app(trusted.config(tmp_path / "p.db"))
    url = f"/cds-services/{b.SELECT}/explain"
    response = app.test_client().post(url, json=symptomatic_request(), headers=trusted.headers(f"http://localhost{url}"))
    assert response.status_code == 404
    assert "exclusions" not in response.get_data(as_text=True)
