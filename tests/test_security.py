"""Authentication of the CDS client through the API (production mode), as an EHR would meet it."""
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
    assert "missing Authorization header" in body["issue"][0]["diagnostics"]
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
def test_bad_tokens_get_401_with_the_reason(prod, trusted, make, message):
    response = call(prod, make(trusted))
    assert response.status_code == 401
    assert message in response.get_json()["issue"][0]["diagnostics"]


def test_iat_slightly_in_the_future_is_accepted(prod, trusted):
    assert call(prod, trusted.token(SERVICE_URL, iat=int(time.time()) + 1)).status_code == 200


def test_replayed_token_is_refused_across_worker_processes(trusted, tmp_path):
    """Two apps on one database stand for two gunicorn workers."""
    database = tmp_path / "shared.db"
    worker_a = create_app(trusted.config(database)).test_client()
    worker_b = create_app(trusted.config(database)).test_client()
    token = trusted.token(SERVICE_URL)
    assert call(worker_a, token).status_code == 200
    replay = call(worker_b, token)
    assert replay.status_code == 401 and "replayed" in replay.get_json()["issue"][0]["diagnostics"]


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
        create_app({"env": "production", "database_url": f"sqlite:///{tmp_path / 'cds.db'}"})


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
    assert replay.status_code == 401 and "replayed" in replay.get_json()["issue"][0]["diagnostics"]
