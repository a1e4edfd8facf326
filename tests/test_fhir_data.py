"""Prefetch resolution (CDS Hooks 2.0.1 section 5) and reading from the EHR's FHIR server.

`responses` plays the EHR's FHIR server at FHIR. Any request to a URL that is not registered
raises ConnectionError inside `requests`, so no test can reach a real network.
"""
from __future__ import annotations

import json
import logging
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

import tokens
from builders import (cards, ratings, warning_cards, SELECT, SIGN, TODAY, all_condition, bundle, condition, hook_request, patient,
                      service_request)
from cds_service import create_app

FHIR = "https://ehr.example.org/fhir"
PATIENT_URL = f"{FHIR}/Patient/pat1"
CONDITION_URL = f"{FHIR}/Condition"
THERAPY = ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Procedure")
TOKEN = "opaque-access-token-7f3a9c"
DOWN_SYNDROME = "41040004"           # a Condition the decision classifies as benign (Down syndrome)
CT_CHEST = "71260"            # "usually not appropriate": warning card with a chest radiograph suggestion
XR_CHEST = "71046"


# -- fixtures and helpers --------------------------------------------------------------------

@pytest.fixture
def fhir():
    """The EHR's FHIR server. Unregistered URLs raise requests.ConnectionError. The patient has no
    MedicationRequests unless a test says otherwise."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for kind in THERAPY:
            rsps.get(f"{FHIR}/{kind}", json=bundle([]))
        yield rsps


def post(client, body, service=SELECT):
    return client.post(f"/cds-services/{service}", json=body)


def no_prefetch(orders=None, token=None, **kwargs):
    """A call that carries no prefetch at all: everything must come from the FHIR server."""
    body = hook_request(orders or [service_request(code=CT_CHEST)], prefetch=False, fhir_server=FHIR, **kwargs)
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/Patient.read patient/Condition.read",
                                     "subject": "acr-imaging-cds"}
    return body


def serve_patient(rsps, resource=None, **kwargs):
    if resource is None and not kwargs:
        resource = patient()
    if resource is not None:
        kwargs["json"] = resource
    rsps.get(PATIENT_URL, **kwargs)


def serve_conditions(rsps, resources=(), next_url=None, **kwargs):
    """The first page of `Condition?patient=pat1`."""
    if not kwargs:
        page = bundle(list(resources))
        if next_url:
            page["link"] = [{"relation": "self", "url": f"{CONDITION_URL}?patient=pat1"},
                            {"relation": "next", "url": next_url}]
        kwargs["json"] = page
    rsps.get(CONDITION_URL, match=[matchers.query_param_matcher({"patient": "pat1"}, strict_match=False)],
             **kwargs)


def page(resources, next_url=None):
    result = bundle(list(resources))
    if next_url:
        result["link"] = [{"relation": "next", "url": next_url}]
    return result


def calls_to(rsps, url_prefix):
    return [c for c in rsps.calls if c.request.url.startswith(url_prefix)]


def diagnostics(response) -> str:
    """The OperationOutcome's human-readable diagnostics (asserting the shape on the way)."""
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["severity"] in ("error", "fatal")
    text = body["issue"][0]["diagnostics"]
    assert isinstance(text, str) and text.strip()
    return text


def withheld(response) -> dict:
    """The answer when the child is in scope on what was read but the Conditions were read only in
    part: no warning and no not-appropriate, one info card that says what could not be checked, and
    PAMA no-criteria-apply for every order. Returns the card."""
    [card] = cards(response)
    assert card["indicator"] == "info" and "withheld" in card["summary"]
    assert "Usually not appropriate" not in card["summary"] + card["detail"]
    assert set(ratings(response).values()) == {"no-criteria-apply"}
    assert says_conditions_were_incomplete(card["detail"]), card["detail"]
    return card


def says_conditions_were_incomplete(detail: str) -> bool:
    """A line of the card detail says that some Conditions were not read."""
    return any("Condition" in line and re.search(r"page|not read|could not|not available|unavailable", line)
               for line in detail.splitlines())


def essentials(body: dict) -> dict:
    """What a clinician sees and the EHR stores, without the per-call uuids and consult ids."""
    def codes(card):
        return sorted((coding.get("system"), coding.get("code"))
                      for s in card.get("suggestions", ()) for a in s["actions"]
                      for coding in a["resource"]["code"]["coding"])

    def rating(action):
        return next(e["valueCodeableConcept"]["coding"][0]["code"] for e in action["resource"]["extension"]
                    if e["url"].endswith("pama-rating"))
    return {
        "cards": [(c["indicator"], c["summary"], codes(c)) for c in body["cards"]],
        "details": [c["detail"] for c in body["cards"]],
        "ratings": sorted((a["resource"]["id"], rating(a)) for a in body.get("systemActions", ())),
    }


# -- prefetch resolution ---------------------------------------------------------------------

def test_full_prefetch_needs_no_fhir_server_call(client, fhir):
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    response = post(client, body)
    assert len(warning_cards(response)) == 1
    assert len(fhir.calls) == 0


def test_absent_keys_are_fetched_patient_read_and_condition_search(client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()])
    response = post(client, no_prefetch())
    assert len(warning_cards(response)) == 1
    assert len(calls_to(fhir, PATIENT_URL)) == 1
    searches = calls_to(fhir, CONDITION_URL)
    assert len(searches) == 1
    query = parse_qs(urlsplit(searches[0].request.url).query)
    assert query["patient"] == ["pat1"]


def test_only_the_absent_key_is_fetched(client, fhir):
    serve_conditions(fhir, [all_condition()])
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    del body["prefetch"]["conditions"]
    response = post(client, body)
    assert len(warning_cards(response)) == 1
    assert calls_to(fhir, f"{FHIR}/Patient") == []
    assert len(calls_to(fhir, CONDITION_URL)) == 1


def test_null_conditions_mean_no_data_and_are_not_fetched(client, fhir):
    serve_conditions(fhir, [all_condition()])   # would produce a warning if it were (wrongly) fetched
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    body["prefetch"]["conditions"] = None
    response = post(client, body)
    assert cards(response) == []
    assert len(fhir.calls) == 0


def test_null_patient_is_412_and_not_fetched(client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()])
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    body["prefetch"]["patient"] = None
    response = post(client, body)
    assert response.status_code == 412
    assert re.search(r"Patient", diagnostics(response))
    assert calls_to(fhir, f"{FHIR}/Patient") == []


@pytest.mark.parametrize("key", ["patient", "conditions"])
def test_operation_outcome_in_a_key_is_treated_as_absent_and_fetched(client, fhir, key):
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()])
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    body["prefetch"][key] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "transient", "diagnostics": "upstream timeout in the EHR"}]}
    response = post(client, body)
    assert len(warning_cards(response)) == 1
    url = PATIENT_URL if key == "patient" else CONDITION_URL
    assert len(calls_to(fhir, url)) == 1


def test_empty_search_bundle_is_a_real_nothing_found(client, fhir):
    serve_conditions(fhir, [all_condition()])   # would produce a warning if it were (wrongly) fetched
    body = hook_request([service_request(code=CT_CHEST)], conditions=[], fhir_server=FHIR)
    assert body["prefetch"]["conditions"]["entry"] == []
    response = post(client, body)
    assert cards(response) == []
    assert len(fhir.calls) == 0


def test_absent_conditions_without_fhir_server_decide_on_nothing(client):
    body = hook_request([service_request(code=CT_CHEST)])
    del body["prefetch"]["conditions"]
    assert cards(post(client, body)) == []


def test_no_prefetch_and_no_fhir_server_is_412(client):
    body = hook_request([service_request(code=CT_CHEST)], prefetch=False)
    response = post(client, body)
    assert response.status_code == 412
    text = diagnostics(response)
    assert "Patient" in text and "fhirServer" in text


def test_no_fetch_at_all_when_nothing_is_rated(client, fhir):
    """A study the knowledge does not know needs no patient data: no call, no 412."""
    response = post(client, no_prefetch([service_request(code="72132")]))
    assert cards(response) == []
    assert len(fhir.calls) == 0


# -- same answer with and without prefetch ---------------------------------------------------

SCENARIOS = {
    "ct-chest-new-all-girl": (SELECT, [service_request(code=CT_CHEST)], patient(), [all_condition()]),
    "sign-basket-boy": (SIGN, [service_request("o1", CT_CHEST), service_request("o2", XR_CHEST),
                               service_request("o3", "76870")],
                        patient(gender="male"), [all_condition(), condition("c-down", DOWN_SYNDROME)]),
    "diagnosis-not-new": (SELECT, [service_request(code=CT_CHEST)], patient(), [all_condition(days_ago=120)]),
    "no-leukemia": (SELECT, [service_request(code=CT_CHEST)], patient(), [condition("c-down", DOWN_SYNDROME)]),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_prefetch_gives_the_same_cards_as_full_prefetch(client, fhir, name):
    service, orders, pat, conditions = SCENARIOS[name]
    hook = "order-select" if service == SELECT else "order-sign"
    serve_patient(fhir, pat)
    serve_conditions(fhir, conditions)

    with_prefetch = post(client, hook_request(orders, pat=pat, conditions=conditions, hook=hook), service)
    assert len(fhir.calls) == 0
    fetched = post(client, hook_request(orders, hook=hook, prefetch=False, fhir_server=FHIR), service)
    assert len(fhir.calls) == 6   # Patient, Condition and the four therapy records

    assert cards(with_prefetch) is not None and cards(fetched) is not None
    assert essentials(fetched.get_json()) == essentials(with_prefetch.get_json())
    if name != "no-leukemia":
        assert with_prefetch.get_json()["cards"], "the scenario should produce a card"


# -- how the FHIR server is called -----------------------------------------------------------

def test_bearer_token_and_fhir_accept_header_are_sent(client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()])
    response = post(client, no_prefetch(token=TOKEN))
    assert len(warning_cards(response)) == 1
    assert len(fhir.calls) == 6
    for call in fhir.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.request.headers["Accept"] == "application/fhir+json"


def test_no_authorization_header_without_fhir_authorization(client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()])
    post(client, no_prefetch())
    assert len(fhir.calls) == 6
    assert all("Authorization" not in call.request.headers for call in fhir.calls)


def test_fhir_server_base_with_trailing_slash(client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()])
    body = no_prefetch()
    body["fhirServer"] = FHIR + "/"
    assert len(warning_cards(post(client, body))) == 1
    assert {c.request.url.split("?")[0] for c in fhir.calls} == {PATIENT_URL, CONDITION_URL, *(f"{FHIR}/{kind}" for kind in THERAPY)}


def test_the_token_is_never_logged(app, fhir):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("cds_service")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        client = app.test_client()
        serve_patient(fhir)
        serve_conditions(fhir, status=401, json={"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "security", "diagnostics": f"token {TOKEN} has expired"}]})
        post(client, no_prefetch(token=TOKEN))
        fhir.replace(responses.GET, PATIENT_URL, status=401)
        assert post(client, no_prefetch(token=TOKEN)).status_code == 412
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert records, "the hook calls should have been logged"
    for record in records:
        text = logging.Formatter().format(record) + repr(record.__dict__)
        assert TOKEN not in text


# -- paging ----------------------------------------------------------------------------------

PAGE_2 = f"{FHIR}?_getpages=a1b2c3&_getpagesoffset=1&_count=1"
PAGE_3 = f"{FHIR}?_getpages=a1b2c3&_getpagesoffset=2&_count=1"


def test_next_links_are_followed_to_find_the_all_condition(client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, [condition("c-down", DOWN_SYNDROME)], next_url=PAGE_2)
    fhir.get(PAGE_2, json=page([all_condition()]))
    response = post(client, no_prefetch(token=TOKEN))
    assert len(warning_cards(response)) == 1
    assert len(calls_to(fhir, PAGE_2)) == 1
    assert calls_to(fhir, PAGE_2)[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_without_the_second_page_there_is_no_warning(client, fhir):
    """The control for the test above: page 1 alone holds no ALL."""
    serve_patient(fhir)
    serve_conditions(fhir, [condition("c-down", DOWN_SYNDROME)])
    assert cards(post(client, no_prefetch())) == []


def test_paging_is_capped_and_the_card_says_what_was_not_read(make_client, fhir):
    client = make_client(fhir_max_pages=2)
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()], next_url=PAGE_2)
    fhir.get(PAGE_2, json=page([condition("c-down", DOWN_SYNDROME)], next_url=PAGE_3))
    fhir.get(PAGE_3, json=page([condition("c-down-2", DOWN_SYNDROME)]))
    card = withheld(post(client, no_prefetch()))
    assert "pages beyond the first 2 were not read" in card["detail"]
    assert len(calls_to(fhir, PAGE_2)) == 1
    assert calls_to(fhir, PAGE_3) == []


FOREIGN_NEXT = [
    "https://evil.example.com/fhir?_getpages=a1b2c3&_getpagesoffset=1",
    "http://ehr.example.org/fhir?_getpages=a1b2c3&_getpagesoffset=1",            # downgraded to http
    "https://ehr.example.org.evil.example.com/fhir?_getpages=a1b2c3",
    "https://ehr.example.org:8443/fhir?_getpages=a1b2c3",
]


@pytest.mark.parametrize("next_url", FOREIGN_NEXT)
def test_a_next_link_to_another_host_is_not_followed(client, fhir, next_url):
    serve_patient(fhir)
    serve_conditions(fhir, [condition("c-down", DOWN_SYNDROME)], next_url=next_url)
    foreign = fhir.get(re.compile(r"^(?!https://ehr\.example\.org/).*"), json=page([all_condition()]))
    response = post(client, no_prefetch(token=TOKEN))
    assert response.status_code == 200
    assert warning_cards(response) == []   # the ALL on the foreign "page 2" is not used
    assert foreign.call_count == 0
    for call in fhir.calls:
        assert call.request.url.startswith(FHIR + "/")
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_redirect_is_not_followed(client, fhir):
    serve_patient(fhir, status=302, headers={"Location": "https://evil.example.com/fhir/Patient/pat1"})
    foreign = fhir.get(re.compile(r"^https://evil\.example\.com/.*"), json=patient())
    response = post(client, no_prefetch(token=TOKEN))
    assert response.status_code == 412
    assert foreign.call_count == 0


@pytest.mark.parametrize("failure", ["foreign-next-link", "page-2-http-500"])
def test_a_paging_failure_keeps_the_pages_already_read(client, fhir, failure):
    serve_patient(fhir)
    if failure == "foreign-next-link":
        serve_conditions(fhir, [all_condition()], next_url=FOREIGN_NEXT[0])
    else:
        serve_conditions(fhir, [all_condition()], next_url=PAGE_2)
        fhir.get(PAGE_2, status=500)
    card = withheld(post(client, no_prefetch(token=TOKEN)))
    assert "B-cell acute lymphoblastic leukemia (SNOMED CT 277571004), confirmed, active, diagnosed" in card["detail"]   # what was read is kept and shown


def test_a_paginated_prefetch_is_completed_from_the_server(client, fhir):
    """Prefetched data must equal the query's result: a prefetched first page with a next link
    is read on from the server, and the ALL on page 2 counts."""
    fhir.get(PAGE_2, json=page([all_condition()]))
    body = hook_request([service_request(code=CT_CHEST)], conditions=[condition("c-down", DOWN_SYNDROME)],
                        fhir_server=FHIR)
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": PAGE_2}]
    assert len(warning_cards(post(client, body))) == 1
    assert len(calls_to(fhir, PAGE_2)) == 1


def test_a_paginated_prefetch_that_cannot_be_completed_says_so(client, fhir):
    fhir.get(PAGE_2, status=503)
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": PAGE_2}]
    withheld(post(client, body))


# -- failures ----------------------------------------------------------------------------------

FAILURES = {
    # name: (responses kwargs, what the diagnostics must say about why)
    "401": ({"status": 401}, r"401|refused|unauthori[sz]ed"),
    "403": ({"status": 403}, r"403|refused|forbidden"),
    "404": ({"status": 404}, r"404|not found"),
    "500": ({"status": 500}, r"500"),
    "connect-timeout": ({"body": requests.exceptions.ConnectTimeout("connect timed out")}, r"time"),
    "read-timeout": ({"body": requests.exceptions.ReadTimeout("read timed out")}, r"time"),
    "unreachable": ({"body": requests.exceptions.ConnectionError("connection refused")},
                    r"reach|connect|unavailable"),
    "garbage-json": ({"body": "<html><body>Service Unavailable</body></html>", "status": 200,
                      "content_type": "application/fhir+json"}, r"JSON|pars"),
    "json-array": ({"json": [1, 2, 3]}, r"resource|JSON|Patient"),
    "operation-outcome": ({"json": {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing"}]}}, r"Patient"),
    "other-patient": ({"json": patient("someone-else")}, r"Patient"),
}


@pytest.mark.parametrize("name", FAILURES)
def test_patient_unavailable_from_the_server_is_412_saying_what_and_why(production_client, fhir, name):
    """The caller's own, configured FHIR server: the 412 says what it did (another host's is not told)."""
    kwargs, why = FAILURES[name]
    serve_patient(fhir, **kwargs)
    serve_conditions(fhir, [all_condition()])
    response = production_client(no_prefetch(token=TOKEN))
    assert response.status_code == 412, response.get_data(as_text=True)
    text = diagnostics(response)
    assert "Patient/pat1" in text
    assert re.search(why, text, re.IGNORECASE), text
    assert TOKEN not in response.get_data(as_text=True)


@pytest.mark.parametrize("name", FAILURES)
def test_conditions_unavailable_from_the_server_still_answers_200(client, fhir, name):
    kwargs, _ = FAILURES[name]
    serve_patient(fhir)
    serve_conditions(fhir, **kwargs)
    response = post(client, no_prefetch(token=TOKEN))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert cards(response) == []   # no ALL known: no staging warning, nothing claimed
    assert len(calls_to(fhir, PATIENT_URL)) == 1


def test_the_search_answering_something_else_than_a_bundle_is_not_a_crash(client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, json=all_condition())
    assert cards(post(client, no_prefetch())) == []


# -- deadline ----------------------------------------------------------------------------------

FAST = {"hook_deadline": 0.2, "fhir_connect_timeout": 0.1, "fhir_read_timeout": 0.1}


def test_a_hanging_fhir_server_gives_a_clear_412_within_the_deadline(make_production_client, fhir):
    call = make_production_client(**FAST)

    def hang(request):
        raise requests.exceptions.ReadTimeout("read timed out (read timeout=0.1)")
    fhir.add_callback(responses.GET, PATIENT_URL, callback=hang)
    serve_conditions(fhir, [all_condition()])
    response = call(no_prefetch(token=TOKEN))
    assert response.status_code == 412
    text = diagnostics(response)
    assert "Patient/pat1" in text and re.search(r"time", text, re.IGNORECASE)
    # the timeouts given to requests never exceed the configured ones
    connect, read = calls_to(fhir, PATIENT_URL)[0].request.req_kwargs["timeout"]
    assert 0 < connect <= 0.1 and 0 < read <= 0.1


def test_conditions_are_searched_while_the_patient_is_read(make_client, fhir):
    client = make_client(**FAST)
    events = []

    def slow_patient(request):
        events.append("patient asked")
        time.sleep(0.1)
        events.append("patient answered")
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(patient())

    def conditions(request):
        events.append("conditions asked")
        return 200, {}, json.dumps(bundle([all_condition()]))
    fhir.add_callback(responses.GET, PATIENT_URL, callback=slow_patient)
    fhir.add_callback(responses.GET, CONDITION_URL, callback=conditions)
    response = post(client, no_prefetch())
    assert len(warning_cards(response)) == 1
    assert events.index("conditions asked") < events.index("patient answered")


def test_later_pages_get_only_the_remaining_budget(make_client, fhir):
    client = make_client(**FAST)
    serve_patient(fhir)

    def slow_first_page(request):
        time.sleep(0.12)
        return 200, {}, json.dumps(page([condition("c-down", DOWN_SYNDROME)], next_url=PAGE_2))
    fhir.add_callback(responses.GET, CONDITION_URL, callback=slow_first_page)
    fhir.get(PAGE_2, json=page([all_condition()]))
    response = post(client, no_prefetch())
    assert response.status_code == 200
    for call in calls_to(fhir, PAGE_2):
        connect, read = call.request.req_kwargs["timeout"]
        assert read <= 0.2 - 0.12 + 0.01


# -- fhirServer checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x", "ftp://ehr.example.org/fhir",
                                 "gopher://ehr.example.org", "javascript:alert(1)", "http://", "ehr.example.org/fhir",
                                 "//ehr.example.org/fhir"])
@pytest.mark.parametrize("with_prefetch", [True, False])
def test_fhir_server_that_is_not_http_is_400(client, fhir, url, with_prefetch):
    body = hook_request([service_request(code=CT_CHEST)], prefetch=with_prefetch)
    body["fhirServer"] = url
    response = post(client, body)
    assert response.status_code == 400
    assert "fhirServer" in diagnostics(response)
    assert len(fhir.calls) == 0


@pytest.fixture
def make_production_client(tmp_path):
    """A production app, called by a trusted client with a valid JWT, whose FHIR server is FHIR."""
    def make(**overrides):
        trusted = tokens.Client(tmp_path)
        app = create_app(trusted.config(tmp_path / "prod.db", fhir_servers=[FHIR], **overrides))
        app.extensions["cds"].handler.today = lambda: TODAY
        client = app.test_client()

        def call(body, service=SELECT):
            return client.post(f"/cds-services/{service}", json=body,
                               headers=trusted.headers(f"http://localhost/cds-services/{service}"))
        return call
    return make


@pytest.fixture
def production_client(make_production_client):
    return make_production_client()


def test_production_refuses_an_http_fhir_server(production_client, fhir):
    body = no_prefetch()
    body["fhirServer"] = "http://ehr.example.org/fhir"
    response = production_client(body)
    assert response.status_code == 400
    assert "fhirServer" in diagnostics(response)
    assert len(fhir.calls) == 0


def test_production_accepts_an_https_fhir_server(production_client, fhir):
    serve_patient(fhir)
    serve_conditions(fhir, [all_condition()])
    response = production_client(no_prefetch(token=TOKEN))
    assert len(warning_cards(response)) == 1


def test_development_accepts_an_http_fhir_server(client, fhir):
    base = "http://127.0.0.1:8081"
    fhir.get(f"{base}/Patient/pat1", json=patient())
    fhir.get(f"{base}/Condition", json=bundle([all_condition()]))
    body = no_prefetch()
    body["fhirServer"] = base
    assert len(warning_cards(post(client, body))) == 1
