"""Hostile input, leaks and limits, as a caller meets them through the API (issue 9)."""
from __future__ import annotations

import json
import logging

import pytest
import requests
import responses
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import SELECT, SIGN, TODAY, all_condition, bundle, hook_request, patient, service_request, warning_cards
from cds_service import create_app
from cds_service.observability import pseudonym
from tokens import ISSUER, Client

FHIR = "https://ehr.example.org/fhir"
CT_CHEST = "71250"


def diagnostics(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


def unprefetched(pid="pat1", fhir_server=FHIR) -> dict:
    return hook_request([service_request(code=CT_CHEST, pid=pid)], pid=pid, prefetch=False, fhir_server=fhir_server)


@pytest.fixture
def no_network():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def trusted(tmp_path):
    return Client(tmp_path)


def production(trusted, tmp_path, **settings_):
    app = create_app(trusted.config(tmp_path / "prod.db", **settings_))
    app.extensions["cds"].handler.today = lambda: TODAY
    client = app.test_client()

    def call(body, service=SELECT):
        return client.post(f"/cds-services/{service}", json=body,
                           headers=trusted.headers(f"http://localhost/cds-services/{service}"))
    return call


def serve(fhir, base=FHIR, pid="pat1"):
    fhir.get(f"{base}/Patient/{pid}", json=patient(pid))
    fhir.get(f"{base}/Condition", json=bundle([all_condition(pid=pid)]))
    fhir.get(f"{base}/MedicationRequest", json=bundle([]))


# -- fhirServer is bound to the caller ----------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data", "http://[::ffff:169.254.169.254]/", "http://2852039166/",
    "http://[fe80::1]:8080/fhir", "http://metadata.google.internal/computeMetadata/v1", "http://0.0.0.0:8080/",
    "http://[fd00:ec2::254]/"])
def test_development_never_reads_link_local_or_metadata_addresses(client, no_network, url):
    message = diagnostics(client.post(f"/cds-services/{SELECT}", json=unprefetched(fhir_server=url)), 403)
    assert "link-local or metadata" in message
    assert len(no_network.calls) == 0


def test_development_still_reads_a_fhir_server_on_this_machine(client, no_network):
    serve(no_network, "http://127.0.0.1:8080/fhir")
    response = client.post(f"/cds-services/{SELECT}", json=unprefetched(fhir_server="http://127.0.0.1:8080/fhir/"))
    assert len(warning_cards(response)) == 1


@pytest.mark.parametrize("failure", [
    dict(body=requests.ConnectionError("connection refused by 127.0.0.1:6379")), dict(status=404),
    dict(status=401), dict(body=requests.ReadTimeout("read timed out"))], ids=["closed-port", "404", "401", "timeout"])
def test_a_412_says_nothing_about_the_network_of_the_host(client, no_network, failure):
    no_network.get("http://127.0.0.1:6379/Patient/pat1", **failure)
    message = diagnostics(client.post(f"/cds-services/{SELECT}",
                                      json=unprefetched(fhir_server="http://127.0.0.1:6379")), 412)
    assert message == "required FHIR data could not be obtained: Patient/pat1 could not be read from the FHIR server"


def test_production_refuses_a_fhir_server_the_issuer_may_not_name(trusted, tmp_path, no_network):
    call = production(trusted, tmp_path, fhir_servers=[FHIR])
    message = diagnostics(call(unprefetched(fhir_server="https://attacker.example.net/fhir")), 403)
    assert "not a FHIR server this client is allowed to name" in message
    assert len(no_network.calls) == 0  # the EHR's token went nowhere


def test_production_without_configured_fhir_servers_refuses_every_one(trusted, tmp_path, no_network):
    call = production(trusted, tmp_path)
    diagnostics(call(unprefetched()), 403)
    assert len(no_network.calls) == 0
    assert len(warning_cards(call(hook_request([service_request(code=CT_CHEST)])))) == 1  # prefetch alone works


@pytest.mark.parametrize("spelling", ["https://EHR.example.org/fhir/", "https://ehr.example.org:443/fhir"])
def test_production_matches_the_configured_base_in_any_spelling(trusted, tmp_path, no_network, spelling):
    serve(no_network)
    call = production(trusted, tmp_path, fhir_servers=[FHIR])
    assert len(warning_cards(call(unprefetched(fhir_server=spelling)))) == 1


def test_a_configured_issuer_is_bound_to_its_servers_in_development_too(trusted, tmp_path, no_network):
    config = {**trusted.config(tmp_path / "dev.db", fhir_servers=[FHIR]), "env": "development"}
    client = create_app(config).test_client()
    headers = trusted.headers(f"http://localhost/cds-services/{SELECT}")
    response = client.post(f"/cds-services/{SELECT}", json=unprefetched(fhir_server="http://127.0.0.1:9/"),
                           headers=headers)
    diagnostics(response, 403)


# -- every malformed URL is a 400 ---------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://[::1", "http://[::1]:-1/", "http://ehr.example.org:99999/fhir", "http://user:secret@ehr.example.org/",
    "http://ehr.example.org/fhir?_format=json", "http://ehr.example.org/fhir#x", "http://ehr example.org/",
    "http://ehr.example.org/\nfhir", "https://", "http:///fhir", "ehr.example.org/fhir", "file:///etc/passwd"])
def test_a_malformed_fhir_server_is_400(client, no_network, url):
    assert "fhirServer" in diagnostics(client.post(f"/cds-services/{SELECT}", json=unprefetched(fhir_server=url)), 400)
    assert len(no_network.calls) == 0


# -- no patient or resource id in the logs -------------------------------------------------------

def test_logs_carry_hashes_not_patient_or_resource_ids(client, no_network, log_lines):
    no_network.get(f"{FHIR}/Patient/MRN-00012345", status=404)
    response = client.post(f"/cds-services/{SELECT}", json=unprefetched(pid="MRN-00012345"))
    assert "Patient/MRN-00012345" in diagnostics(response, 412)  # the caller may see its own ids
    invalid = hook_request([{**service_request(sid="sr-secret-77", code=CT_CHEST), "status": 42}])
    assert "sr-secret-77" in diagnostics(client.post(f"/cds-services/{SELECT}", json=invalid), 400)
    logged = json.dumps(log_lines())
    assert "MRN-00012345" not in logged and "sr-secret-77" not in logged
    lines = [line for line in log_lines() if line.get("event") == "hook_call"]
    assert lines[0]["patient"] == pseudonym("MRN-00012345")
    assert f"Patient/{pseudonym('MRN-00012345')}" in lines[0]["error"]


def test_the_hashes_correlate_across_workers_with_a_configured_secret(tmp_path):
    first = create_app({"database_url": f"sqlite:///{tmp_path / 'a.db'}", "patient_hash_key": "s3cret"})
    assert first and pseudonym("MRN-1") == pseudonym("MRN-1")
    value = pseudonym("MRN-1")
    create_app({"database_url": f"sqlite:///{tmp_path / 'b.db'}", "patient_hash_key": "s3cret"})
    assert pseudonym("MRN-1") == value
    create_app({"database_url": f"sqlite:///{tmp_path / 'c.db'}", "patient_hash_key": "other"})
    assert pseudonym("MRN-1") != value


# -- limits ---------------------------------------------------------------------------------------

def many_orders(n: int) -> dict:
    return hook_request([service_request(sid=f"sr-{i}", code=CT_CHEST) for i in range(n)], hook="order-sign")


def test_too_many_orders_is_413_naming_the_limit(client):
    assert "CDS_MAX_ORDERS" in diagnostics(client.post(f"/cds-services/{SIGN}", json=many_orders(12_000)), 413)
    assert len(warning_cards(client.post(f"/cds-services/{SIGN}", json=many_orders(100)))) == 100  # at the limit


def test_too_many_prefetched_conditions_is_413(make_client):
    client = make_client(max_resources=50)
    body = hook_request([service_request(code=CT_CHEST)],
                        conditions=[all_condition()] + [all_condition(cid=f"c-{i}") for i in range(50)])
    assert "CDS_MAX_RESOURCES" in diagnostics(client.post(f"/cds-services/{SELECT}", json=body), 413)


def test_the_issue_20_body_of_6800_conditions_is_refused_before_any_work(client):
    body = hook_request([service_request(code=CT_CHEST)],
                        conditions=[all_condition()] + [all_condition(cid=f"c-{i}") for i in range(6800)])
    assert "CDS_MAX_RESOURCES" in diagnostics(client.post(f"/cds-services/{SELECT}", json=body), 413)


def test_a_call_over_its_work_budget_of_codings_is_413(make_client):
    client = make_client(max_call_codings=400)
    conditions = [all_condition()] + [all_condition(cid=f"c-{i}") for i in range(150)]
    body = hook_request([service_request(code=CT_CHEST)], conditions=conditions)
    assert "CDS_MAX_CALL_CODINGS" in diagnostics(client.post(f"/cds-services/{SELECT}", json=body), 413)
    body = hook_request([service_request(code=CT_CHEST)], conditions=conditions[:40])
    assert len(warning_cards(client.post(f"/cds-services/{SELECT}", json=body))) == 1


@pytest.mark.parametrize("where", ["order", "condition"])
def test_too_many_codings_in_one_resource_is_413(client, where):
    codings = [{"system": "urn:local", "code": str(i)} for i in range(101)]
    order = service_request(code=CT_CHEST)
    condition = all_condition()
    if where == "order":
        order["reasonCode"] = [{"coding": codings}]
    else:
        condition["code"]["coding"] += codings
    body = hook_request([order], conditions=[condition])
    assert "CDS_MAX_CODINGS" in diagnostics(client.post(f"/cds-services/{SELECT}", json=body), 413)


def test_an_answer_larger_than_the_limit_is_413(make_client):
    client = make_client(max_response_bytes=4000)
    assert "CDS_MAX_RESPONSE_BYTES" in diagnostics(client.post(f"/cds-services/{SIGN}", json=many_orders(5)), 413)


# -- HTTP details -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, allowed", [
    ("get", f"/cds-services/{SELECT}", {"POST", "OPTIONS"}), ("post", "/health", {"GET", "HEAD", "OPTIONS"}),
    ("delete", "/cds-services", {"GET", "HEAD", "OPTIONS"}), ("put", f"/cds-services/{SELECT}/feedback", {"POST", "OPTIONS"})])
def test_405_carries_the_allow_header(client, method, path, allowed):
    response = getattr(client, method)(path)
    diagnostics(response, 405)
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_development_refuses_a_token_that_is_present_but_invalid(trusted, tmp_path):
    client = create_app({**trusted.config(tmp_path / "dev.db"), "env": "development"}).test_client()
    url = f"http://localhost/cds-services/{SELECT}"
    body = hook_request([service_request(code=CT_CHEST)])
    assert client.post(f"/cds-services/{SELECT}", json=body).status_code == 200  # no token: tolerated
    assert client.post(f"/cds-services/{SELECT}", json=body, headers=trusted.headers(url)).status_code == 200
    for header in ("Bearer not-a-jwt", f"Bearer {trusted.token(url + '/feedback')}", "Basic dXNlcjpwYXNz"):
        response = client.post(f"/cds-services/{SELECT}", json=body, headers={"Authorization": header})
        assert "authentication failed" in diagnostics(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_token_without_typ_is_refused(trusted, tmp_path, log_lines):
    import jwt
    import time
    import uuid
    call_url = f"http://localhost/cds-services/{SELECT}"
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": call_url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
                       trusted.key, algorithm="ES384", headers={"kid": "test-key-1", "typ": None})
    client = create_app(trusted.config(tmp_path / "prod.db")).test_client()
    response = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request(code=CT_CHEST)]),
                           headers={"Authorization": f"Bearer {token}"})
    assert diagnostics(response, 401) == "authentication failed"
    assert "typ" in [line for line in log_lines() if line.get("status") == 401][0]["error"]


# -- the database down --------------------------------------------------------------------------------

def test_while_the_database_is_down_calls_and_feedback_are_answered_and_written_when_it_is_back(app):
    client = app.test_client()
    store, journal = app.extensions["cds"].store, app.extensions["cds"].audit
    assert client.get("/ready").get_json()["database"] == "up"
    working = store.engine
    store.engine = sa.create_engine("postgresql+psycopg://cds:cds@127.0.0.1:9/cds",
                                    connect_args={"connect_timeout": 1})  # nothing listens on port 9
    hook = client.post(f"/cds-services/{SELECT}", json=hook_request([service_request(code=CT_CHEST)]))
    [card] = warning_cards(hook)  # the ordering workflow does not depend on the database
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T18:14:14Z"}]}
    response = client.post(f"/cds-services/{SELECT}/feedback", json=feedback)
    assert response.status_code == 200 and response.get_json() == {}  # accepted into the journal
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["database"] == "unreachable"
    assert not journal.flush()
    store.engine.dispose()
    store.engine = working  # the database is back
    assert journal.flush()
    with working.connect() as conn:
        assert conn.execute(sa.text("SELECT card_uuid, matched FROM cds_feedback")).all() == [(card["uuid"], True)]
        assert conn.execute(sa.text("SELECT count(*) FROM cds_issued_cards")).scalar() == 1


# -- fuzz: fhirServer, patientId and token headers never give a 5xx -------------------------------------

hosts = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "ehr.example.org", "[::1", "a b",
                         "", "2852039166", "[fe80::1%25eth0]", "xn--80ak6aa92e.com", "h\u00e9llo.example"])
urls = st.builds(lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
                 st.sampled_from(["http://", "https://", "ftp://", "", "http:/", "HTTP://"]), hosts,
                 st.sampled_from(["", ":8080", ":0", ":99999", ":-1", ":x"]),
                 st.sampled_from(["", "/", "/fhir", "/fhir?x=1", "/#", "/%00", "/\u2603"])) | st.text(max_size=30) \
    | st.sampled_from([FHIR, FHIR + "/", "https://attacker.example.net/fhir", "http://169.254.169.254/",
                       "http://127.0.0.1:8080/fhir", "https://[::1]/fhir"])
VALID = "a valid signed token"
tokens = st.one_of(st.none(), st.just(VALID), st.just(VALID), st.text(max_size=40), st.sampled_from(
    ["Bearer", "Bearer ", "Bearer a.b.c", "bearer eyJhbGciOiJub25lIn0.e30.", "Basic x", "Bearer a b"]))
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("mode", ["development", "production"])
def test_property_fhir_server_patient_id_and_token_never_give_a_5xx(trusted, tmp_path, mode):
    config = {**trusted.config(tmp_path / f"{mode}.db", fhir_servers=[FHIR]), "env": mode, "hook_deadline": 0.2}
    app = create_app(config)
    app.extensions["cds"].handler.today = lambda: TODAY
    logging.getLogger("cds_service").disabled = True
    client = app.test_client()
    statuses = set()

    @FUZZ
    @given(url=urls, pid=st.text(min_size=1, max_size=20) | st.sampled_from(["pat1", "MRN-00012345"]),
           authorization=tokens, prefetch=st.booleans())
    def run(url, pid, authorization, prefetch):
        body = hook_request([service_request(code=CT_CHEST, pid=pid)], pid=pid, prefetch=prefetch)
        body["fhirServer"] = url
        if authorization == VALID:
            authorization = trusted.headers(f"http://localhost/cds-services/{SELECT}")["Authorization"]
        headers = {"Authorization": authorization} if authorization is not None else {}
        try:
            response = client.post(f"/cds-services/{SELECT}", json=body, headers=headers)
        except ValueError:  # the test client itself refuses some header values (newlines)
            return
        assert response.status_code < 500, response.get_data(as_text=True)
        assert response.is_json and (response.status_code == 200 or response.get_json()["resourceType"] == "OperationOutcome")
        statuses.add(response.status_code)

    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False):  # nothing leaves the machine
            run()
    finally:
        logging.getLogger("cds_service").disabled = False
    assert {400, 401, 403} <= statuses, statuses
