"""Authentication of the CDS client through the API (production mode), as an EHR would meet it."""
import json
import logging
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from builders import SELECT, hook_request, service_request
from cds_service import create_app
from tokens import ISSUER, KID, Client

BASE = "http://localhost"
SERVICE_URL = f"{BASE}/cds-services/{SELECT}"


@pytest.fixture
def trusted(tmp_path):
    return Client(tmp_path)


@pytest.fixture
def prod(trusted, tmp_path):
    return create_app(trusted.config(tmp_path / "cds.db")).test_client()


def call(client, token=None, path=f"/cds-services/{SELECT}", body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(path, json=body or hook_request([service_request(code="71250")]), headers=headers)


def test_signed_call_is_answered_and_unsigned_gets_401(prod, trusted):
    signed = call(prod, trusted.token(SERVICE_URL))
    assert signed.status_code == 200 and signed.get_json()["cards"][0]["indicator"] == "warning"
    unsigned = call(prod)
    assert unsigned.status_code == 401
    body = unsigned.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "authentication failed"  # the reason is logged, not told
    assert unsigned.headers["WWW-Authenticate"] == "Bearer"


def _forged(**overrides):
    key = ec.generate_private_key(ec.SECP384R1())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": SERVICE_URL, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID})


@pytest.mark.parametrize("make, message", [
    (lambda c: c.token(f"{BASE}/cds-services"), "aud"),
    (lambda c: c.token(SERVICE_URL, exp=int(time.time()) - 600), "expired"),
    (lambda c: c.token(SERVICE_URL, iat=int(time.time()) + 600), "not yet valid"),
    (lambda c: c.token(SERVICE_URL, iss="https://evil.example.org"), "untrusted issuer"),
    (lambda c: c.token(SERVICE_URL)[:-6] + "AAAAAA", "signature"),
    (lambda c: _forged(), "signature"),
    (lambda c: jwt.encode({"iss": ISSUER, "aud": SERVICE_URL}, None, algorithm="none",
                          headers={"kid": KID}), "alg"),
    (lambda c: "not-a-jwt", "malformed"),
    (lambda c: c.token(SERVICE_URL, jti=12345), "JWT ID must be a string"),
])
def test_bad_tokens_get_401_and_the_reason_is_logged(prod, trusted, make, message, log_lines):
    response = call(prod, make(trusted))
    assert response.status_code == 401
    assert response.get_json()["issue"][0]["diagnostics"] == "authentication failed"
    [line] = [line for line in log_lines() if line.get("status") == 401]
    assert message in line["error"]


def test_iat_slightly_in_the_future_is_accepted(prod, trusted):
    assert call(prod, trusted.token(SERVICE_URL, iat=int(time.time()) + 1)).status_code == 200


def test_replayed_token_is_refused_across_worker_processes(trusted, tmp_path):
    """Two apps on one database stand for two gunicorn workers."""
    database = tmp_path / "shared.db"
    worker_a = create_app(trusted.config(database)).test_client()
    worker_b = create_app(trusted.config(database)).test_client()
    token = trusted.token(SERVICE_URL)
    assert call(worker_a, token).status_code == 200
    assert call(worker_b, token).status_code == 401  # "token replayed" in the log


def test_discovery_and_feedback_need_a_token_with_their_own_audience(prod, trusted):
    assert prod.get("/cds-services").status_code == 401
    ok = prod.get("/cds-services", headers=trusted.headers(f"{BASE}/cds-services"))
    assert ok.status_code == 200 and len(ok.get_json()["services"]) == 2
    feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                              "outcomeTimestamp": "2026-11-23T18:14:14.309Z"}]}
    path = f"/cds-services/{SELECT}/feedback"
    assert prod.post(path, json=feedback).status_code == 401
    assert prod.post(path, json=feedback, headers=trusted.headers(f"{BASE}{path}")).status_code == 200


def test_audience_uses_the_public_base_url_behind_a_proxy(trusted, tmp_path):
    public = "https://cds.hospital.example.org/acr"
    client = create_app(trusted.config(tmp_path / "cds.db", public_base_url=public)).test_client()
    assert call(client, trusted.token(SERVICE_URL)).status_code == 401
    assert call(client, trusted.token(f"{public}/cds-services/{SELECT}")).status_code == 200


def test_production_refuses_to_start_without_trusted_issuers(tmp_path):
    with pytest.raises(ValueError, match="CDS_TRUSTED_ISSUERS"):
        create_app({"env": "production", "public_base_url": "https://cds.example.org", "db_schema": "migrate",
                    "database_url": f"sqlite:///{tmp_path / 'cds.db'}"})


@pytest.mark.parametrize("base", ["", "cds.hospital.example.org"])
def test_production_refuses_to_start_without_its_public_base_url(trusted, tmp_path, base):
    """The audience would otherwise come from the Host header: a token minted for another host would pass."""
    with pytest.raises(ValueError, match="CDS_PUBLIC_BASE_URL is required in production"):
        create_app(trusted.config(tmp_path / "cds.db", public_base_url=base))


def test_development_accepts_calls_without_a_token(client):
    assert call(client).status_code == 200


def test_a_refused_call_is_logged_with_its_service_and_reason(prod):
    logger = logging.getLogger("cds_service")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        assert call(prod).status_code == 401
    finally:
        logger.removeHandler(handler)
    [line] = [r.fields for r in records if getattr(r, "fields", {}).get("event") == "hook_call"]
    assert line["service"] == SELECT and line["status"] == 401
    assert "missing Authorization header" in line["error"]


def test_replayed_feedback_token_is_refused_on_another_worker(trusted, tmp_path):
    database = tmp_path / "shared.db"
    worker_a = create_app(trusted.config(database)).test_client()
    worker_b = create_app(trusted.config(database)).test_client()
    path = f"/cds-services/{SELECT}/feedback"
    headers = trusted.headers(f"{BASE}{path}")
    feedback = {"feedback": [{"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14.309Z"}]}
    assert worker_a.post(path, json=feedback, headers=headers).status_code == 200
    replay = worker_b.post(path, json=feedback, headers=headers)
    assert replay.status_code == 401  # production: the body says no more than "authentication failed"
    assert worker_b.post(path, json=feedback, headers=trusted.headers(f"{BASE}{path}")).status_code == 200


# -- issue 20: what a refused caller learns, what it costs, the headers ---------------------------------

def test_production_401_bodies_are_bare_and_the_reason_is_logged(trusted, tmp_path, log_lines):
    client = create_app(trusted.config(tmp_path / "cds.db")).test_client()
    token = trusted.token(SERVICE_URL)
    assert call(client, token).status_code == 200
    refused = [call(client), call(client, token), call(client, trusted.token(SERVICE_URL, iss="https://x.example")),
               call(client, trusted.token(f"{BASE}/cds-services"))]
    for response in refused:
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert response.get_json()["issue"][0]["diagnostics"] == "authentication failed"
    errors = [line["error"] for line in log_lines() if line.get("status") == 401]
    assert any("replayed" in e for e in errors) and any("untrusted issuer" in e for e in errors)
    assert any("aud does not match" in e for e in errors)


def test_refused_calls_are_counted_not_written_to_the_audit_and_logged_truncated(trusted, tmp_path, log_lines):
    import sqlalchemy as sa
    app = create_app(trusted.config(tmp_path / "cds.db"))
    client = app.test_client()
    for _ in range(20):
        assert call(client, "x" * 6000).status_code == 401
    assert call(client, trusted.token(SERVICE_URL)).status_code == 200
    rt = app.extensions["cds"]
    rt.audit.flush()
    with rt.store.read() as conn:
        statuses = conn.execute(sa.text("SELECT status FROM cds_hook_calls")).scalars().all()
    assert statuses == [200]
    lines = [line for line in log_lines() if line.get("status") == 401]
    assert len(lines) == 20 and max(len(json.dumps(line)) for line in lines) < 1000
    metrics = client.get("/metrics", headers={"Authorization": "Bearer m-token"})
    assert metrics.status_code == 404  # no CDS_METRICS_TOKEN configured: off in production


def test_metrics_need_their_token_in_production(trusted, tmp_path):
    client = create_app(trusted.config(tmp_path / "cds.db", metrics_token="m-token")).test_client()
    assert call(client).status_code == 401
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {trusted.token(SERVICE_URL)}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401 and response.get_json()["resourceType"] == "OperationOutcome"
    scraped = client.get("/metrics", headers={"Authorization": "Bearer m-token"})
    assert scraped.status_code == 200 and "cds_hook_requests_total" in scraped.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/health", f"/cds-services/{SELECT}", "/guidance/", "/no/such/page"])
def test_every_answer_carries_the_security_headers(prod, path):
    response = prod.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none': no script
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Cache-Control" in response.headers


def test_json_answers_are_not_cached(prod, trusted):
    response = call(prod, trusted.token(SERVICE_URL))
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_feedback_is_capped_per_post(prod, trusted):
    path = f"/cds-services/{SELECT}/feedback"
    entries = [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14Z"}
               for _ in range(101)]
    response = prod.post(path, json={"feedback": entries}, headers=trusted.headers(f"{BASE}{path}"))
    assert response.status_code == 413 and "CDS_MAX_FEEDBACK_ENTRIES" in response.get_json()["issue"][0]["diagnostics"]
