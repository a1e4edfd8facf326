"""Fail safe on real EHR data: strict evidence to bring a child in, any plausible evidence to take one
out, and a gap that could hide an exclusion withholds the rating.

Every case starts from the reference call (a 7-year-old girl, B-ALL confirmed 3 days ago, CT chest
selected), which gets a warning and PAMA not-appropriate; each test changes one thing, through the
API, with requests shaped like an EHR's. A `control` beside each rule shows that clean data still warns.
"""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import responses
from hypothesis import HealthCheck, given, settings, strategies as st

from builders import (CLINICAL, ICD10CM, SNOMED, TODAY, VERIFICATION, all_condition, born, bundle, cards,
                      condition, hook_request, patient, ratings, service_request)

CT_CHEST = "71260"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
LOCAL = "urn:oid:1.2.840.114350.1.13.0.1.7.4.698084.10375"   # an Epic-style local code system
FHIR = "https://ehr.example.org/fhir"


def post(client, body):
    return client.post("/cds-services/acr-all-staging-order-select", json=body)


def call(client, conditions=None, orders=None, **kwargs):
    conditions = [all_condition()] if conditions is None else conditions
    return post(client, hook_request(orders or [service_request(code=CT_CHEST)], conditions=conditions, **kwargs))


def warned(response) -> bool:
    """The reference outcome: one warning and PAMA not-appropriate for the CT."""
    found = cards(response)
    rated = ratings(response)
    is_warned = any(c["indicator"] == "warning" for c in found)
    assert is_warned == (rated.get("order-1") == "not-appropriate"), (found, rated)
    return is_warned


def not_warned(response) -> list[dict]:
    """No warning, no not-appropriate, the CT rated no-criteria-apply; returns the cards (info at most)."""
    found = cards(response)
    assert all(c["indicator"] == "info" for c in found), [c["summary"] for c in found]
    assert all("Usually not appropriate" not in c["summary"] + c["detail"] for c in found)
    assert ratings(response)["order-1"] == "no-criteria-apply"
    return found


def cough(**kwargs) -> dict:
    return condition("cough", "49727002", display="Cough", **kwargs)


def control_warns(client):
    assert warned(call(client))


# -- 1. exclusions count even from resources that fail validation ------------------------------

MALFORMATIONS = {
    "stu3-assertedDate": lambda r: {**r, "assertedDate": "2026-11-20"},
    "bare-string-clinicalStatus": lambda r: {**r, "clinicalStatus": "active"},
    "impossible-date": lambda r: {**r, "onsetDateTime": "2026-11-31"},
    "identifier-wrong-type": lambda r: {**r, "identifier": {"value": "123"}},
    "code-coding-not-a-list": lambda r: {**r, "code": {"coding": r["code"]["coding"][0]}},
    "no-subject": lambda r: {k: v for k, v in r.items() if k != "subject"},
}

EXCLUSIONS = {
    "cough": lambda: cough(),
    "relapse-C91.02": lambda: condition("rel", "C91.02", system=ICD10CM, days_ago=400),
    "aml": lambda: condition("aml", "91861009", days_ago=2),
    "aml-icd10": lambda: condition("aml", "C92.00", system=ICD10CM, days_ago=2),
    "remission-91856007": lambda: condition("rem", "91856007", days_ago=2),
}


@pytest.mark.parametrize("flaw", MALFORMATIONS)
@pytest.mark.parametrize("exclusion", EXCLUSIONS)
def test_a_malformed_exclusion_still_takes_the_child_out(client, exclusion, flaw):
    spoiled = MALFORMATIONS[flaw](EXCLUSIONS[exclusion]())
    not_warned(call(client, [all_condition(), spoiled]))


def test_a_malformed_symptom_is_named_on_the_card(client):
    found = not_warned(call(client, [all_condition(), {**cough(), "assertedDate": "2026-11-20"}]))
    [card] = found
    assert "symptomatic (cough)" in card["summary"]
    assert "symptoms: Cough (SNOMED CT 49727002)" in card["detail"]


def test_control_clean_record_still_warns(client):
    control_warns(client)


# -- 2. what could not be read withholds the rating --------------------------------------------

def withheld(response) -> dict:
    [card] = not_warned(response)
    assert "withheld" in card["summary"]
    return card


def test_conditions_not_prefetched_and_no_fhir_server_give_no_data_to_rate(client):
    body = hook_request([service_request(code=CT_CHEST)])
    del body["prefetch"]["conditions"]
    response = post(client, body)
    assert cards(response) == [] and ratings(response) == {"order-1": "no-criteria-apply"}


def test_a_paginated_prefetch_without_fhir_server_withholds(client):
    body = hook_request([service_request(code=CT_CHEST)])
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": f"{FHIR}/Condition?page=2"}]
    card = withheld(post(client, body))
    assert "only the first page of the conditions prefetch" in card["detail"]
    assert "B-cell acute lymphoblastic leukemia (SNOMED CT 277571004), confirmed, active, diagnosed" in card["detail"]   # what was read is shown


@responses.activate
def test_page_two_of_the_condition_search_failing_withholds(client):
    responses.get(f"{FHIR}/Patient/pat1", json=patient())
    responses.get(f"{FHIR}/MedicationRequest", json=bundle([]))
    first = bundle([all_condition()])
    first["link"] = [{"relation": "next", "url": f"{FHIR}/Condition?page=2"}]
    responses.get(f"{FHIR}/Condition", json=first,
                  match=[responses.matchers.query_param_matcher({"patient": "pat1"}, strict_match=False)])
    responses.get(f"{FHIR}/Condition", status=500,
                  match=[responses.matchers.query_param_matcher({"page": "2"}, strict_match=False)])
    body = hook_request([service_request(code=CT_CHEST)], prefetch=False, fhir_server=FHIR)
    card = withheld(post(client, body))
    assert "HTTP 500" in card["detail"]


@pytest.mark.parametrize("entry", [{"resource": "Condition/x"}, {"fullUrl": "urn:uuid:1"}, "junk", None],
                         ids=["resource-a-string", "no-resource", "entry-a-string", "entry-null"])
def test_an_entry_that_cannot_be_read_withholds(client, entry):
    body = hook_request([service_request(code=CT_CHEST)])
    body["prefetch"]["conditions"]["entry"].append(entry)
    assert "held no resource" in withheld(post(client, body))["detail"]


@pytest.mark.parametrize("code", [42, ["cough"], {"coding": "R05.9"}], ids=["number", "list", "coding-a-string"])
def test_a_condition_whose_code_cannot_be_read_withholds(client, code):
    unknown = {**condition("c9", "x"), "code": code}
    assert "Condition/c9: its code could not be read" in withheld(call(client, [all_condition(), unknown]))["detail"]


def test_an_error_outcome_in_the_search_bundle_withholds(client):
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "too-costly", "diagnostics": "result set truncated"}]}
    card = withheld(call(client, [all_condition(), outcome]))
    assert "result set truncated" in card["detail"]


def test_a_warning_outcome_in_the_search_bundle_does_not_withhold(client):
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}
    assert warned(call(client, [all_condition(), outcome]))


def test_a_withheld_rating_still_names_a_gap_only_when_the_child_would_be_in(client):
    """An adult with a gap gets nothing: the gap cannot matter when the child is already out."""
    body = hook_request([service_request(code=CT_CHEST)], pat=patient(birth_date=born(40)))
    body["prefetch"]["conditions"]["entry"].append("junk")
    response = post(client, body)
    assert cards(response) == [] and ratings(response) == {"order-1": "no-criteria-apply"}


def test_a_condition_about_another_patient_is_noted_but_does_not_withhold(client):
    other = all_condition("other", pid="pat2")
    [card] = cards(call(client, [all_condition(), other]))
    assert card["indicator"] == "warning"
    assert "1 record about another patient left out" in card["detail"]


# -- 3. statuses by their code system ---------------------------------------------------------

def status_concept(*codings, text=None) -> dict:
    concept = {"coding": [{"system": s, "code": c} for s, c in codings]}
    if text:
        concept["text"] = text
    return concept


@pytest.mark.parametrize("clinical", [
    status_concept(("http://local.example.org/status", "A"), (CLINICAL, "remission")),
    status_concept((CLINICAL, "active"), (CLINICAL, "remission")),
    status_concept(text="in remission"),
    status_concept(("http://local.example.org/status", "active")),
    {},
], ids=["hl7-remission-second", "conflicting-hl7", "text-only", "local-only", "empty"])
def test_an_all_clinical_status_that_is_not_plainly_active_takes_the_child_out(client, clinical):
    dx = {**all_condition(), "clinicalStatus": clinical}
    not_warned(call(client, [dx]))


@pytest.mark.parametrize("verification", [
    status_concept(text="entered in error"),
    status_concept(("http://local.example.org/ver", "EIE")),
    status_concept(("http://local.example.org/ver", "C"), (VERIFICATION, "provisional")),
], ids=["text-only", "local-only", "hl7-provisional-second"])
def test_an_all_verification_status_that_is_not_plainly_confirmed_brings_no_one_in(client, verification):
    dx = {**all_condition(), "verificationStatus": verification}
    not_warned(call(client, [dx]))


def test_control_hl7_status_in_second_position_still_counts(client):
    dx = {**all_condition(),
          "clinicalStatus": status_concept(("http://local.example.org/status", "A"), (CLINICAL, "active")),
          "verificationStatus": status_concept(("http://local.example.org/ver", "C"), (VERIFICATION, "confirmed"))}
    assert warned(call(client, [dx]))


@pytest.mark.parametrize("status", [status_concept(text="resolved"), "resolved", status_concept(("x", "inactive"))],
                         ids=["text", "bare-string", "local-code"])
def test_a_symptom_whose_status_cannot_be_read_still_counts(client, status):
    not_warned(call(client, [all_condition(), {**cough(), "clinicalStatus": status}]))


def test_a_symptom_resolved_in_hl7_terms_does_not_count(client):
    assert warned(call(client, [all_condition(), cough(clinical="resolved")]))


# -- 4. the diagnosis date from every onset[x] --------------------------------------------------

def dated(**onset) -> dict:
    dx = all_condition(days_ago=None)
    dx.update(onset)
    return dx


def iso(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


@pytest.mark.parametrize("onset", [
    {"onsetString": "2019", "recordedDate": iso(0)},
    {"onsetString": "diagnosed 2021-06-01, re-entered today", "recordedDate": iso(0)},
    {"onsetAge": {"value": 2, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"},
     "recordedDate": iso(0)},
    {"onsetRange": {"low": {"value": 5, "code": "a", "system": "http://unitsofmeasure.org"}}, "recordedDate": iso(0)},
    {"onsetPeriod": {"start": iso(200)}, "recordedDate": iso(0)},
], ids=["onsetString-year", "onsetString-date", "onsetAge", "onsetRange", "onsetPeriod"])
def test_an_old_diagnosis_re_entered_today_is_not_new(client, onset):
    [card] = not_warned(call(client, [dated(**onset)]))
    assert "older than 30 days" in card["summary"]


@pytest.mark.parametrize("onset", [
    {"onsetString": "a few weeks ago", "recordedDate": iso(0)},
    {"onsetAge": {"value": "seven", "code": "a"}},
    {"onsetRange": {"high": {"value": 7, "code": "a"}}},
    {"onsetPeriod": {"end": iso(1)}},
    {"onsetDateTime": "yesterday"},
    {},
], ids=["onsetString-no-date", "onsetAge-not-a-number", "onsetRange-no-low",
        "onsetPeriod-no-start", "onsetDateTime-text", "no-date"])
def test_a_diagnosis_date_that_cannot_be_known_is_not_new(client, onset):
    [card] = not_warned(call(client, [dated(**onset)]))
    assert "has no date" in card["summary"] or "not valid FHIR R4" in card["summary"]   # some are both


def test_onset_age_counts_from_the_day_the_age_was_reached(client):
    """onsetAge 7 years for a child of 7 years 6 months: the diagnosis may be 6 months old."""
    [card] = not_warned(call(client, [dated(onsetAge={"value": 7, "code": "a"})], pat=patient(birth_date=born(7, 6))))
    assert "older than 30 days" in card["summary"]


def test_control_onset_age_of_a_recent_diagnosis_is_new(client):
    pat = patient(birth_date=iso(2600))
    assert warned(call(client, [dated(onsetAge={"value": 2597, "unit": "days"})], pat=pat))


def test_the_earliest_all_condition_decides_even_when_it_is_malformed(client):
    old = {**all_condition("old", days_ago=300), "assertedDate": "2025-01-01"}  # invalid R4, date readable
    [card] = not_warned(call(client, [all_condition(), old]))
    assert "older than 30 days" in card["summary"]


def test_an_all_named_only_in_text_with_an_old_date_is_not_new(client):
    text_only = {**condition("t1", "LOC-77", system=LOCAL, days_ago=900), "code": {
        "coding": [{"system": LOCAL, "code": "LOC-77"}], "text": "Acute lymphoblastic leukemia (ALL)"}}
    not_warned(call(client, [all_condition(), text_only]))


def test_control_recorded_date_alone_still_dates_the_diagnosis(client):
    assert warned(call(client, [dated(recordedDate=iso(2))]))


# -- 5. the order's indication -----------------------------------------------------------------

def ct_with_reasons(*concepts) -> dict:
    return {**service_request(code=CT_CHEST), "reasonCode": list(concepts)}


def coded(system, code, display=None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def test_febrile_neutropenia_on_chemotherapy_is_not_a_staging_order(client):
    order = ct_with_reasons(coded(ICD10CM, "D70.1", "Agranulocytosis secondary to cancer chemotherapy"),
                            coded(ICD10CM, "R50.81", "Fever presenting with conditions classified elsewhere"))
    not_warned(call(client, [all_condition(days_ago=18)], orders=[order]))


@pytest.mark.parametrize("reason, card", [
    (coded(ICD10CM, "R50.81"), "withheld"), ({"text": "fever"}, "withheld"),
    ({"text": "follow-up of pneumonia"}, "symptomatic (pneumonia)"), (coded(LOCAL, "FEV-1"), "withheld"),
    ({"text": "baseline"}, None),
], ids=["fever-coded", "fever-text", "other-text", "local-code", "baseline"])
def test_a_reason_that_is_not_staging_gives_no_rating(client, reason, card):
    """No rating; a reason the closed world cannot classify is named on an info card (withheld), one that
    names a symptom explains it, one that is accounted for but not staging ("baseline") gets no card."""
    found = not_warned(call(client, orders=[ct_with_reasons(reason)]))
    assert [c["summary"] for c in found if card and card in c["summary"]] == [c["summary"] for c in found]
    assert len(found) == (1 if card else 0)


@pytest.mark.parametrize("reason", [
    coded(SNOMED, "277571004"), coded(ICD10CM, "C91.00"), {"text": "Initial staging, new B-ALL"},
    {"text": "Check for metastatic disease"}, {"text": "acute lymphoblastic leukemia"}, {"coding": [{}]},
], ids=["all-snomed", "all-icd10", "staging-text", "hl7-di-text", "disease-text", "sandbox-empty"])
def test_control_a_staging_reason_is_still_rated(client, reason):
    assert warned(call(client, orders=[ct_with_reasons(reason)]))


def test_one_order_for_staging_and_one_for_fever_withholds_both(client):
    """Fever is not a finding the closed world accounts for, and it is about the patient: the staging
    order is not rated either, and the info card names the reason that could not be classified."""
    staging = {**service_request("o-stage", CT_CHEST), "reasonCode": [{"text": "ALL staging"}]}
    fever = {**service_request("o-fever", "71250"), "reasonCode": [coded(ICD10CM, "R50.81")]}
    response = call(client, orders=[staging, fever])
    [card] = cards(response)
    assert card["indicator"] == "info" and "withheld" in card["summary"]
    assert "the reason of ServiceRequest/o-fever could not be classified" in card["detail"]
    assert ratings(response) == {"o-stage": "no-criteria-apply", "o-fever": "no-criteria-apply"}


def test_a_reason_reference_that_cannot_be_resolved_is_not_staging(client):
    order = {**service_request(code=CT_CHEST), "reasonReference": [{"reference": "Observation/xyz"}]}
    response = call(client, orders=[order])
    assert cards(response) == [] and ratings(response) == {"order-1": "no-criteria-apply"}


def test_a_reason_reference_to_the_all_condition_is_staging(client):
    order = {**service_request(code=CT_CHEST), "reasonReference": [{"reference": "Condition/all-1"}]}
    assert warned(call(client, orders=[order]))


# -- 6. therapy already started ------------------------------------------------------------------

def medication_request(concept=None, status="active", mid="m1", **extra) -> dict:
    resource = {"resourceType": "MedicationRequest", "id": mid, "status": status, "intent": "order",
                "subject": {"reference": "Patient/pat1"}, "authoredOn": iso(1), **extra}
    if concept is not None:
        resource["medicationCodeableConcept"] = concept
    return resource


@pytest.mark.parametrize("concept", [
    coded(RXNORM, "11202", "vincristine"),
    coded(RXNORM, "1863343", "vinCRIStine sulfate 1 MG/ML Injectable Solution"),   # a clinical-drug code: by name
    {"text": "PEG-asparaginase (pegaspargase) IV"},
    coded(ATC, "L01XX24"),
    coded(ATC, "H02AB02", "dexamethasone"),
    {"coding": [{"code": "11202"}]},                                                   # code without a system
], ids=["rxnorm-ingredient", "rxnorm-scd-by-name", "text-only", "atc-l01", "atc-steroid", "no-system"])
def test_an_induction_agent_takes_the_child_out(client, concept):
    response = call(client, medications=[medication_request(concept)])
    not_warned(response)


def test_a_contained_medication_is_read(client):
    med = medication_request(medicationReference={"reference": "#med"},
                             contained=[{"resourceType": "Medication", "id": "med",
                                         "code": coded(RXNORM, "3639", "doxorubicin")}])
    not_warned(call(client, medications=[med]))


@pytest.mark.parametrize("status", ["draft", "cancelled", "entered-in-error"])
def test_control_an_induction_agent_never_given_does_not_count(client, status):
    assert warned(call(client, medications=[medication_request(coded(RXNORM, "11202"), status=status)]))


def test_control_other_medications_do_not_count(client):
    ondansetron = medication_request(coded(RXNORM, "26225", "ondansetron"))
    [card] = cards(call(client, medications=[ondansetron]))
    assert card["indicator"] == "warning"
    assert "no ALL therapy among 1 medication and procedure records" in card["detail"]


@pytest.mark.parametrize("code", ["D70.1", "Z51.11", "T45.1X5A", "Z92.21"])
def test_a_diagnosis_that_proves_chemotherapy_takes_the_child_out(client, code):
    not_warned(call(client, [all_condition(), condition("chemo", code, system=ICD10CM, days_ago=1)]))


def test_without_medication_data_the_card_says_therapy_was_not_checked(client):
    body = hook_request([service_request(code=CT_CHEST)])
    for key in ("medications", "medicationAdministrations", "medicationStatements", "procedures"):
        del body["prefetch"][key]
    [card] = cards(post(client, body))
    assert card["indicator"] == "warning"
    assert "therapy not checked (no medication data" in card["detail"]


def test_with_medication_orders_only_the_card_says_which_therapy_records_were_not_read(client):
    body = hook_request([service_request(code=CT_CHEST)])
    for key in ("medicationAdministrations", "medicationStatements", "procedures"):
        del body["prefetch"][key]
    [card] = cards(post(client, body))
    assert card["indicator"] == "warning"
    assert "not read in full: medication administrations, medication statements, procedures" in card["detail"]


@responses.activate
def test_a_failed_medication_search_does_not_withhold_but_is_said(client):
    responses.get(f"{FHIR}/MedicationRequest", status=503)
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    del body["prefetch"]["medications"]
    [card] = cards(post(client, body))
    assert card["indicator"] == "warning"
    assert "not read in full: medication orders" in card["detail"]


def test_a_medication_that_cannot_be_identified_withholds_the_rating(client):
    """It could be the therapy (closed world): no rating, and the card names it."""
    unknown = medication_request(medicationReference={"reference": "Medication/elsewhere"})
    [card] = not_warned(call(client, medications=[unknown]))
    assert "withheld" in card["summary"]
    assert "MedicationRequest/" in card["detail"] and "could not be identified" in card["detail"]


# -- 7. symptoms as EHRs code them ---------------------------------------------------------------

@pytest.mark.parametrize("system, code", [
    (SNOMED, "11833005"), (SNOMED, "28743005"), (SNOMED, "56018004"), (ICD10CM, "R06.2"), (ICD10CM, "R05.1"),
    (ICD10CM, "G44.209"), (ICD10CM, "R56.00"), (ICD10CM, "M79.604"), ("urn:oid:2.16.840.1.113883.6.90", "R05.9"),
    (None, "R05.9"), ("http://unknown.example.org", "49727002"),
], ids=["dry-cough", "productive-cough", "wheezing-snomed", "wheezing-icd10", "acute-cough", "tension-headache",
        "febrile-convulsion", "leg-pain", "icd10cm-oid", "no-system", "wrong-system"])
def test_symptom_codes_as_ehrs_send_them(client, system, code):
    coding = {"code": code} if system is None else {"system": system, "code": code}
    symptom = {**condition("s1", "x"), "code": {"coding": [coding]}}
    not_warned(call(client, [all_condition(), symptom]))


@pytest.mark.parametrize("coding", [
    {"system": ICD10CM, "code": "L01.00", "display": "Impetigo"},   # the form of ATC L01, antineoplastic agents
    {"code": "L01.00"},                                              # same, without a system
    {"system": ICD10CM, "code": "H02.831"},                          # begins like ATC H02, corticosteroids
], ids=["icd10-L01", "no-system-L01", "icd10-H02"])
def test_a_condition_code_is_not_read_as_a_medication_code(client, coding):
    unrelated = {**condition("c1", "x", days_ago=200), "code": {"coding": [coding]}}
    assert warned(call(client, [all_condition(), unrelated]))


@pytest.mark.parametrize("text", ["Cough", "persistent dry cough x3 days", "SOB on exertion", "Headaches",
                                  "wheezing", "swelling of face and neck"])
def test_a_symptom_given_only_as_text_takes_the_child_out(client, text):
    symptom = {**condition("s1", "x"), "code": {"coding": [{"system": LOCAL, "code": "9999"}], "text": text}}
    not_warned(call(client, [all_condition(), symptom]))


@pytest.mark.parametrize("text", ["cough", "Stridor", "r/o mediastinal mass"])
def test_a_symptom_in_the_order_reason_text_takes_the_child_out(client, text):
    response = call(client, orders=[ct_with_reasons({"text": text})])
    assert cards(response) == [] or all(c["indicator"] == "info" for c in cards(response))
    assert ratings(response) == {"order-1": "no-criteria-apply"}


@pytest.mark.parametrize("text", ["Anemia", "Thrombocytopenia", "Body mass index 30", "Down syndrome",
                                  "Acute lymphoblastic leukemia not having achieved remission"])
def test_control_words_that_are_not_symptoms_do_not_silence(client, text):
    other = {**condition("o1", "x"), "code": {"coding": [{"system": LOCAL, "code": "1"}], "text": text}}
    assert warned(call(client, [all_condition(), other]))


# -- 8. a stale rating is cleared ----------------------------------------------------------------

@pytest.mark.parametrize("conditions", [[all_condition(), cough()], [all_condition(days_ago=90)], []],
                         ids=["symptomatic", "not-new", "no-leukemia"])
def test_an_out_of_scope_order_is_rated_no_criteria_apply(client, conditions):
    order = service_request(code=CT_CHEST)
    order["extension"] = [{"url": "http://fhir.org/argonaut/Extension/pama-rating", "valueCodeableConcept": {
        "coding": [{"system": "http://fhir.org/argonaut/CodeSystem/pama-rating", "code": "not-appropriate"}]}}]
    response = call(client, conditions, orders=[order])
    assert ratings(response) == {"order-1": "no-criteria-apply"}   # the earlier not-appropriate is replaced


# -- the property: no malformed exclusion ever lets a warning through -----------------------------

EXCLUSION_CODES = [(SNOMED, "49727002"), (SNOMED, "11833005"), (SNOMED, "267036007"), (SNOMED, "70407001"),
                   (SNOMED, "91861009"), (SNOMED, "91856007"), (ICD10CM, "C91.02"), (ICD10CM, "C91.01"),
                   (ICD10CM, "C92.00"), (ICD10CM, "R05.9"), (ICD10CM, "R06.02"), (ICD10CM, "R51.9"),
                   (ICD10CM, "D70.1"), (ICD10CM, "Z51.11")]

JUNK = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@st.composite
def malformed_exclusions(draw) -> dict:
    system, code = draw(st.sampled_from(EXCLUSION_CODES))
    coding = {"code": code}
    if draw(st.booleans()):
        coding["system"] = draw(st.sampled_from([system, None, "http://local.example.org", "urn:oid:2.16.840.1.113883.6.90"])
                                ) if system == ICD10CM else draw(st.sampled_from([system, None, "urn:oid:2.16.840.1.113883.6.96"]))
    if coding.get("system") is None:
        coding.pop("system", None)
    codings = [coding]
    if draw(st.booleans()):
        codings.insert(draw(st.integers(0, 1)), {"system": "http://local.example.org", "code": draw(st.text(max_size=5))})
    concept = {"coding": codings if draw(st.booleans()) else coding}   # a list, or a lone coding object
    resource = {"resourceType": "Condition", "id": draw(st.sampled_from(["x1", "x2", 7])), "code": concept,
                "subject": draw(st.sampled_from([{"reference": "Patient/pat1"}, "Patient/pat1", None]))}
    for name in draw(st.lists(st.sampled_from(["clinicalStatus", "verificationStatus", "onsetDateTime",
                                               "assertedDate", "identifier", "category", "recordedDate"]),
                              max_size=4, unique=True)):
        resource[name] = draw(st.one_of(JUNK, st.sampled_from([
            {"coding": [{"system": CLINICAL, "code": "active"}]}, {"text": "active"}, "active", "2026-11-31"])))
    return {k: v for k, v in resource.items() if v is not None}


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exclusion=malformed_exclusions(), position=st.integers(0, 1))
def test_property_no_malformed_exclusion_ever_yields_a_warning(client, exclusion, position):
    conditions = [all_condition()]
    conditions.insert(position, copy.deepcopy(exclusion))
    response = call(client, conditions)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert not warned(response), exclusion


def test_a_medication_included_in_the_search_is_read(client):
    med = medication_request(medicationReference={"reference": "Medication/vcr"})
    included = {"resourceType": "Medication", "id": "vcr", "code": coded(RXNORM, "11202", "vincristine")}
    not_warned(call(client, medications=[med, included]))


@responses.activate
def test_medications_are_searched_on_the_fhir_server_when_not_prefetched(client):
    responses.get(f"{FHIR}/MedicationRequest", json=bundle([medication_request({"text": "vincristine 1.5 mg/m2 IV"})]),
                  match=[responses.matchers.query_param_matcher({"patient": "pat1"}, strict_match=False)])
    body = hook_request([service_request(code=CT_CHEST)], fhir_server=FHIR)
    del body["prefetch"]["medications"]
    not_warned(post(client, body))
    assert len(responses.calls) == 1
