"""Through the Flask test client: what a clinician (and the EHR) sees for real-shaped requests.

Every response's cards are checked against the CDS Hooks 2.0.1 card rules (see `checked_cards`);
the PAMA rating must be in both `systemActions` and `extension.systemActions` (see `ratings`).
"""
from __future__ import annotations

import copy
import uuid
from datetime import date, timedelta

import pytest

import builders as b
from builders import PAMA_SYSTEM, PAMA_URL, pama_rating, ratings, CPT, ICD10CM, LOINC, SELECT, SIGN, SNOMED, TODAY, all_condition, born, condition, \
    hook_request, patient, service_request
from cds_service import create_app

UNA = "Usually not appropriate"
MBA_D = "May be appropriate (Disagreement)"
HL7 = "hl7-r4-examples/"


@pytest.fixture
def k(app):
    return app.extensions["cds"].knowledge


# -- helpers ---------------------------------------------------------------------------


def post(client, body, service: str = SELECT):
    return client.post(f"/cds-services/{service}", json=body)


def call(client, body, service: str = SELECT) -> dict:
    response = post(client, body, service)
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    checked_cards(result)
    return result


def checked_cards(result: dict) -> list[dict]:
    """The cards, each checked against the CDS Hooks card rules (cds-hooks.md sections 6 and 14)."""
    cards = result["cards"]
    for card in cards:
        uuid.UUID(card["uuid"])
        assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140, card["summary"]
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"] and card["source"]["url"].startswith("https://acsearch.acr.org/")
        assert card["detail"].strip()
        for link in card.get("links", []):
            assert link["label"] and link["url"] and link["type"] == "absolute"
        if "suggestions" in card:
            assert card["suggestions"]
            assert card["selectionBehavior"] == "at-most-one"
            assert sum(1 for s in card["suggestions"] if s.get("isRecommended")) <= 1
            for suggestion in card["suggestions"]:
                uuid.UUID(suggestion["uuid"])
                assert suggestion["label"] and suggestion["actions"]
                assert all(a["description"] for a in suggestion["actions"])
        for reason in card.get("overrideReasons", []):
            assert reason["system"] and reason["code"] and reason["display"]
    return cards


def one_card(result: dict) -> dict:
    assert len(result["cards"]) == 1, [c["summary"] for c in result["cards"]]
    return result["cards"][0]


def silent(result: dict) -> bool:
    """No card, and every recognised order rated no-criteria-apply (clearing an earlier rating)."""
    return result["cards"] == [] and bool(ratings(result)) and set(ratings(result).values()) == {"no-criteria-apply"}


def system_action(result: dict, order_id: str) -> dict:
    [resource] = [a["resource"] for a in result["systemActions"] if a["resource"]["id"] == order_id]
    return resource


def suggested(card: dict) -> dict:
    """The resource of the card's only suggestion, which must be a single update action. The suggested
    studies are rated May be appropriate (Disagreement): offered, never marked isRecommended."""
    [suggestion] = card["suggestions"]
    assert suggestion["isRecommended"] is False
    [action] = suggestion["actions"]
    assert action["type"] == "update"
    return action["resource"]


def without_extension(resource: dict) -> dict:
    return {key: value for key, value in resource.items() if key != "extension"}


def assert_no_rating_claim(result: dict, k, reason_id: str, words: str) -> None:
    """Out of scope: no warning, no rating claim, only PAMA no-criteria-apply (which clears a rating an
    earlier call gave); at most one info card that says why (only for the reasons the policies explain)."""
    assert ratings(result) and set(ratings(result).values()) == {"no-criteria-apply"}
    for card in result["cards"]:
        assert card["indicator"] == "info"
        assert UNA not in card["summary"] and UNA not in card["detail"]
        assert "May be appropriate" not in card["summary"]
        assert "suggestions" not in card
    if k.policies.out_of_scope[reason_id].explain:
        card = one_card(result)
        assert card["summary"].startswith("Pediatric ALL staging guidance does not apply")
        assert words in card["summary"]
        assert "does not apply" in card["detail"] and "No appropriateness rating" in card["detail"]
    else:
        assert result["cards"] == []


def reason(system: str, code: str, display: str) -> dict:
    """A reasonCode entry as the CDS Hooks Sandbox builds it."""
    return {"coding": [{"code": code, "display": display, "system": system}], "text": display}


def order(oid: str = "order-1", code: str = "71260", system: str = CPT, **kwargs) -> dict:
    return service_request(oid, code, system, **kwargs)


def pin_clock(app, day: date) -> None:
    app.extensions["cds"].handler.today = lambda: day


# -- variant A: chest, any sex ---------------------------------------------------------


@pytest.mark.parametrize("system, code, new_system, new_code", [
    (CPT, "71250", CPT, "71046"),
    (CPT, "71260", CPT, "71046"),
    (CPT, "71270", CPT, "71046"),
    (LOINC, "24627-2", LOINC, "36643-5"),
    (SNOMED, "75385009", SNOMED, "399208008"),
    (SNOMED, "395081000119108", SNOMED, "399208008"),
])
def test_ct_chest_warning_suggests_a_chest_radiograph_in_the_same_system(client, system, code, new_system,
                                                                         new_code):
    ct = order("ct-1", code, system)
    ct["reasonCode"] = [reason(SNOMED, "277571004", "B-cell acute lymphoblastic leukemia")]
    result = call(client, hook_request([ct]))

    card = one_card(result)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("CT chest: Usually not appropriate")
    assert "☢☢☢☢ 3-10 mSv" in card["detail"] and "☢ <0.03 mSv" in card["detail"]
    assert f"**ACR: {UNA}.**" in card["detail"]
    assert f"Chest radiograph (☢ <0.03 mSv), rated {MBA_D}, is offered below" in card["detail"]
    assert card["selectionBehavior"] == "at-most-one"

    resource = suggested(card)
    assert resource["id"] == "ct-1"
    assert resource["subject"] == ct["subject"]
    assert resource["reasonCode"] == ct["reasonCode"]
    assert (resource["status"], resource["intent"]) == ("draft", "plan")
    assert resource["code"]["coding"][0]["system"] == new_system
    assert resource["code"]["coding"][0]["code"] == new_code
    assert len(resource["code"]["coding"]) == 1
    assert pama_rating(resource) == "appropriate"

    override_codes = {r["code"] for r in card["overrideReasons"]}
    assert {"symptomatic", "abnormal-radiograph", "protocol"} <= override_codes
    assert ratings(result) == {"ct-1": "not-appropriate"}
    assert without_extension(system_action(result, "ct-1")) == ct  # the rating does not change the order


def test_warning_states_the_facts_it_relied_on(client):
    pat = patient(gender="female", birth_date=born(7))
    result = call(client, hook_request([order()], pat=pat, conditions=[all_condition(days_ago=3)]))
    detail = one_card(result)["detail"]
    assert "**Relied on:** 7-year-old girl; B-cell acute lymphoblastic leukemia (SNOMED CT 277571004), " \
           f"confirmed, active, diagnosed {(TODAY - timedelta(days=3)).isoformat()}; no symptoms recorded" in detail
    assert "Condition/" not in detail  # no FHIR ids, only words


@pytest.mark.parametrize("code, name, level", [("78815", "FDG-PET/CT", "☢☢☢☢ 3-10 mSv"),
                                               ("78816", "FDG-PET/CT", "☢☢☢☢ 3-10 mSv"),
                                               ("71550", "MRI chest", "no ionizing radiation"),
                                               ("71552", "MRI chest", "no ionizing radiation")])
def test_pet_ct_and_mri_chest_warnings_also_suggest_a_chest_radiograph(client, code, name, level):
    result = call(client, hook_request([order("o1", code)]))
    card = one_card(result)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith(f"{name}: {UNA}")
    assert level in card["detail"] and "☢ <0.03 mSv" in card["detail"]
    resource = suggested(card)
    assert resource["code"]["coding"][0] == {"system": CPT, "code": "71046", "display": "Chest X-ray, 2 views"}
    assert pama_rating(resource) == "appropriate"
    assert ratings(result) == {"o1": "not-appropriate"}


@pytest.mark.parametrize("sex", ["female", "male"])
def test_chest_radiograph_info_carries_the_mediastinal_mass_workflow(client, sex):
    result = call(client, hook_request([order("xr-1", "71046")], pat=patient(gender=sex)))
    card = one_card(result)
    assert card["indicator"] == "info"
    assert card["summary"].startswith(f"Chest radiograph: {MBA_D}")
    assert "☢ <0.03 mSv" in card["summary"]
    detail = card["detail"]
    assert "mediastinal mass: PAUSE before any sedation" in detail
    assert "pediatric anesthesiology and the attending oncologist" in detail
    assert "suggestions" not in card
    assert ratings(result) == {"xr-1": "appropriate"}


# -- variant B: boys -------------------------------------------------------------------


def test_boy_scrotal_ultrasound_is_info(client):
    result = call(client, hook_request([order("us-1", "76870")], pat=patient(gender="male")))
    card = one_card(result)
    assert card["indicator"] == "info"
    assert card["summary"].startswith(f"Scrotal ultrasound: {MBA_D}")
    assert "Radiation: no ionizing radiation." in card["detail"] and "O 0 mSv" not in card["detail"]
    assert "suggestions" not in card
    assert ratings(result) == {"us-1": "appropriate"}


@pytest.mark.parametrize("system, code, new_code", [(CPT, "74177", "76870"), (LOINC, "36813-4", "25002-7"),
                                                    (SNOMED, "1148701004", "1220587009")])
def test_boy_ct_abdomen_pelvis_warning_suggests_scrotal_ultrasound(client, system, code, new_code):
    ct = order("ct-ap", code, system)
    result = call(client, hook_request([ct], pat=patient(gender="male")))
    card = one_card(result)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith(f"CT abdomen/pelvis: {UNA}")
    assert "Radiation: ☢☢☢☢ 3-10 mSv." in card["detail"]
    assert "Scrotal ultrasound (no ionizing radiation), rated" in card["detail"]
    resource = suggested(card)
    assert resource["id"] == "ct-ap" and resource["subject"] == ct["subject"]
    assert (resource["code"]["coding"][0]["system"], resource["code"]["coding"][0]["code"]) == (system, new_code)
    assert pama_rating(resource) == "appropriate"
    assert ratings(result) == {"ct-ap": "not-appropriate"}


def test_girl_ct_abdomen_pelvis_is_not_warned_and_not_rated(client):
    result = call(client, hook_request([order("ct-ap", "74177")], pat=patient(gender="female")))
    card = one_card(result)
    assert card["indicator"] == "info"
    assert "no ACR rating for girls" in card["summary"]
    assert "Not an ACR rating" in card["detail"]
    assert "suggestions" not in card and "overrideReasons" not in card
    assert ratings(result) == {"ct-ap": "no-criteria-apply"}


@pytest.mark.parametrize("gender", ["unknown", "other", None])
def test_unknown_sex_scrotal_ultrasound_gets_nothing_while_chest_rows_still_rate(client, gender):
    pat = patient(gender=gender)
    alone = call(client, hook_request([order("us-1", "76870")], pat=pat))
    assert silent(alone)

    both = call(client, hook_request([order("us-1", "76870"), order("ct-1", "71250")], pat=pat))
    card = one_card(both)
    assert card["indicator"] == "warning" and card["summary"].startswith("CT chest")
    assert f"child (sex: {gender or 'not recorded'})" in card["detail"]
    assert ratings(both) == {"ct-1": "not-appropriate", "us-1": "no-criteria-apply"}


@pytest.mark.parametrize("gender", ["female", "male", "unknown"])
def test_mri_brain_is_info_about_lumbar_puncture_never_a_warning(client, gender):
    result = call(client, hook_request([order("mr-1", "70551")], pat=patient(gender=gender)))
    card = one_card(result)
    assert card["indicator"] == "info"
    assert "no ACR rating" in card["summary"] and "lumbar puncture" in card["summary"]
    assert "Not an ACR rating" in card["detail"]
    assert UNA not in card["summary"]
    assert ratings(result) == {"mr-1": "no-criteria-apply"}


def test_girl_pelvic_ultrasound_is_info_without_rating(client):
    result = call(client, hook_request([order("us-p", "76856")], pat=patient(gender="female")))
    card = one_card(result)
    assert card["indicator"] == "info" and "not standard practice" in card["summary"]
    assert ratings(result) == {"us-p": "no-criteria-apply"}


# -- exclusions: no warning and no PAMA rating ---------------------------------------------


@pytest.mark.parametrize("system, code", [(SNOMED, "49727002"), (ICD10CM, "R05.1")])
def test_symptomatic_condition(client, k, system, code):
    conditions = [all_condition(), condition("cough", code, system)]
    result = call(client, hook_request([order()], conditions=conditions))
    assert_no_rating_claim(result, k, "symptomatic", "symptomatic (cough)")


def test_symptom_as_the_order_reason_in_sandbox_style(client, k):
    ct = order("example-request-id", "71250")
    ct["reasonCode"] = [reason(SNOMED, "49727002", "Cough (finding)")]
    result = call(client, hook_request([ct]))
    assert_no_rating_claim(result, k, "symptomatic", "symptomatic (cough)")


def test_symptom_as_the_order_reason_reference(client, k):
    # The cough Condition is resolved, so only the order's reference makes it count.
    ct = {**order(), "reasonReference": [{"reference": "Condition/cough"}]}
    conditions = [all_condition(), condition("cough", "49727002", clinical="resolved")]
    result = call(client, hook_request([ct], conditions=conditions))
    assert_no_rating_claim(result, k, "symptomatic", "symptomatic (cough)")


def test_symptom_as_a_contained_reason_reference(client, k):
    ct = {**order(), "contained": [{"resourceType": "Condition", "id": "r1", "subject": {"reference": "Patient/pat1"},
                                    "code": {"coding": [{"system": SNOMED, "code": "49727002"}]}}],
          "reasonReference": [{"reference": "#r1"}]}
    assert_no_rating_claim(call(client, hook_request([ct])), k, "symptomatic", "symptomatic (cough)")


@pytest.mark.parametrize("clinical, verification", [("resolved", "confirmed"), ("inactive", "confirmed"),
                                                    ("active", "refuted"), ("active", "entered-in-error")])
def test_resolved_or_refuted_symptom_is_ignored(client, clinical, verification):
    conditions = [all_condition(), condition("cough", "49727002", clinical=clinical, verification=verification)]
    result = call(client, hook_request([order("o1")], conditions=conditions))
    assert one_card(result)["indicator"] == "warning"
    assert ratings(result) == {"o1": "not-appropriate"}


@pytest.mark.parametrize("years, months", [(18, 0), (18, 11)])
def test_eighteen_year_olds_are_children(client, years, months):
    result = call(client, hook_request([order("o1")], pat=patient(birth_date=born(years, months))))
    card = one_card(result)
    assert card["indicator"] == "warning"
    assert f"**Relied on:** {years}-year-old girl;" in card["detail"]
    assert ratings(result) == {"o1": "not-appropriate"}


def test_nineteen_year_olds_are_adults(client, k):
    result = call(client, hook_request([order()], pat=patient(birth_date=born(19))))
    assert_no_rating_claim(result, k, "adult", "older than 18")


def test_missing_birth_date(client, k):
    result = call(client, hook_request([order()], pat=patient(birth_date=None)))
    assert_no_rating_claim(result, k, "age-unknown", "no valid birth date recorded")
    if result["cards"]:
        assert "girl of unknown age (no valid birth date)" in result["cards"][0]["detail"]


@pytest.mark.parametrize("system, code", [(SNOMED, "91861009"), (ICD10CM, "C92.00"),   # AML
                                          (SNOMED, "92818009"), (ICD10CM, "C92.10"),   # CML
                                          (SNOMED, "92814006"), (ICD10CM, "C91.10")])  # CLL
def test_other_leukemias(client, k, system, code):
    for conditions in ([condition("x1", code, system)], [all_condition(), condition("x1", code, system)]):
        result = call(client, hook_request([order()], conditions=conditions))
        assert_no_rating_claim(result, k, "excluded-diagnosis", "another leukemia")


@pytest.mark.parametrize("conditions, reason_id, words", [
    ([condition("a1", "C91.01", ICD10CM)], "remission", "remission"),
    ([all_condition(clinical="remission")], "remission", "remission"),
    ([all_condition(), condition("a2", "C91.01", ICD10CM)], "remission", "remission"),
    ([condition("a1", "C91.02", ICD10CM)], "relapse", "relapse"),
    ([all_condition(clinical="relapse")], "relapse", "relapse"),
    ([all_condition(verification="unconfirmed")], "unconfirmed", "not confirmed"),
    ([all_condition(verification="provisional")], "unconfirmed", "not confirmed"),
    ([all_condition(days_ago=None)], "date-unknown", "no date"),
], ids=["C91.01", "status-remission", "remission-beside-active", "C91.02", "status-relapse", "unconfirmed",
        "provisional", "no-date"])
def test_all_that_is_not_new_active_and_confirmed(client, k, conditions, reason_id, words):
    result = call(client, hook_request([order()], conditions=conditions))
    assert_no_rating_claim(result, k, reason_id, words)


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_erroneous_all_is_ignored(client, verification):
    wrong = all_condition("a0", verification=verification)
    assert silent(call(client, hook_request([order()], conditions=[wrong])))
    result = call(client, hook_request([order("o1")], conditions=[wrong, all_condition()]))
    assert one_card(result)["indicator"] == "warning"
    assert ratings(result) == {"o1": "not-appropriate"}


def test_diagnosis_window(client, k):
    window = k.policies.new_within_days
    inside = call(client, hook_request([order("o1")], conditions=[all_condition(days_ago=window)]))
    assert one_card(inside)["indicator"] == "warning"
    older = call(client, hook_request([order("o1")], conditions=[all_condition(days_ago=window + 1)]))
    assert_no_rating_claim(older, k, "not-new", f"older than {window} days")


def test_diagnosis_window_is_configurable(tmp_path):
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'cds.db'}", "new_diagnosis_days": 90})
    pin_clock(app, TODAY)
    result = call(app.test_client(), hook_request([order("o1")], conditions=[all_condition(days_ago=75)]))
    assert one_card(result)["indicator"] == "warning"


def test_out_of_scope_card_says_why_and_names_the_order(client, k):
    conditions = [all_condition(), condition("cough", "49727002")]
    result = call(client, hook_request([order()], conditions=conditions))
    assert k.policies.out_of_scope["symptomatic"].explain, "this test needs an explained reason"
    card = one_card(result)
    assert card["summary"] == ("Pediatric ALL staging guidance does not apply: symptomatic (cough), "
                               "so the workup follows the symptoms.")
    assert "No appropriateness rating is given for: CT chest." in card["detail"]
    assert "symptoms: Cough (SNOMED CT 49727002)" in card["detail"]


def test_long_symptom_name_still_gives_a_short_summary(client):
    conditions = [all_condition(), condition("neuro", "R29.818", ICD10CM)]
    result = call(client, hook_request([order()], conditions=conditions))  # call() checks summary < 140
    assert all(c["indicator"] == "info" for c in result["cards"])


def test_no_all_at_all_gives_no_cards(client):
    assert silent(call(client, hook_request([order()], conditions=[])))
    cough_only = [condition("cough", "49727002")]
    assert silent(call(client, hook_request([order()], conditions=cough_only)))


def test_all_only_as_the_order_reason_gives_no_cards(client):
    ct = order(reasons=[(SNOMED, "277571004")])
    assert silent(call(client, hook_request([ct], conditions=[])))


# -- duplicates and several orders -------------------------------------------------------


def test_all_coded_twice_on_one_condition_gives_one_card(client):
    dx = all_condition()
    dx["code"]["coding"].append({"system": ICD10CM, "code": "C91.00"})
    result = call(client, hook_request([order("o1")], conditions=[dx]))
    card = one_card(result)
    assert card["detail"].count(", diagnosed ") == 1
    assert ratings(result) == {"o1": "not-appropriate"}


def test_two_all_conditions_give_one_card(client):
    conditions = [all_condition("a1"), condition("a2", "C91.00", ICD10CM)]
    result = call(client, hook_request([order("o1")], conditions=conditions))
    assert one_card(result)["detail"].count(", diagnosed ") == 2
    assert ratings(result) == {"o1": "not-appropriate"}


def test_multiple_selections_get_one_card_each(client):
    orders = [order("ct", "71250"), order("pet", "78815"), order("us", "76870"), order("mr", "70551")]
    result = call(client, hook_request(orders, pat=patient(gender="male")))
    rules = [c["source"]["topic"]["code"].split("/")[-1] for c in result["cards"]]
    assert rules == ["ct-chest", "pet-ct", "us-scrotum", "mr-brain"]
    assert [c["indicator"] for c in result["cards"]] == ["warning", "warning", "info", "info"]
    assert ratings(result) == {"ct": "not-appropriate", "pet": "not-appropriate", "us": "appropriate",
                               "mr": "no-criteria-apply"}
    assert len({c["uuid"] for c in result["cards"]}) == 4


def test_only_selected_orders_are_rated(client):
    drafts = [order("ct", "71250"), order("mr", "71550"), order("us", "76870")]
    result = call(client, hook_request(drafts, selections=["ServiceRequest/mr"], pat=patient(gender="male")))
    card = one_card(result)
    assert card["summary"].startswith("MRI chest")
    assert suggested(card)["id"] == "mr"
    assert ratings(result) == {"mr": "not-appropriate"}


def test_selection_not_among_the_drafts_is_ignored(client):
    result = call(client, hook_request([order("ct", "71250")], selections=["ServiceRequest/elsewhere"]))
    assert result == {"cards": []}


def test_chest_radiograph_already_drafted_means_no_suggestion(client):
    drafts = [order("ct", "71250"), order("xr", "71046")]
    result = call(client, hook_request(drafts, selections=["ServiceRequest/ct"]))
    card = one_card(result)
    assert card["indicator"] == "warning"
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "already among the draft orders" in card["detail"]
    assert ratings(result) == {"ct": "not-appropriate"}


def test_chest_radiograph_drafted_in_another_system_also_means_no_suggestion(client):
    drafts = [order("ct", "71250"), order("xr", "36643-5", LOINC)]
    card = one_card(call(client, hook_request(drafts, selections=["ServiceRequest/ct"])))
    assert "suggestions" not in card


def test_two_chest_warnings_suggest_the_radiograph_only_once(client):
    result = call(client, hook_request([order("ct", "71250"), order("mr", "71550")]))
    warnings = [c for c in result["cards"] if c["indicator"] == "warning"]
    assert len(warnings) == 2
    assert [("suggestions" in c) for c in warnings] == [True, False]
    assert "suggested on another card" in warnings[1]["detail"]


def test_order_sign_rates_every_draft(client):
    drafts = [order("ct", "71250"), order("xr", "71046")]
    result = call(client, hook_request(drafts, hook="order-sign"), service=SIGN)
    assert [c["indicator"] for c in result["cards"]] == ["warning", "info"]
    assert ratings(result) == {"ct": "not-appropriate", "xr": "appropriate"}


def test_a_stale_pama_rating_is_replaced_and_other_extensions_kept(client):
    ct = order("o1", "71250")
    other = {"url": "http://example.org/fhir/StructureDefinition/priority-note", "valueString": "keep me"}
    ct["extension"] = [other, {"url": PAMA_URL, "valueCodeableConcept": {
        "coding": [{"system": PAMA_SYSTEM, "code": "appropriate"}]}}]
    result = call(client, hook_request([ct]))
    resource = system_action(result, "o1")
    assert pama_rating(resource) == "not-appropriate"
    assert other in resource["extension"]
    assert other in suggested(one_card(result))["extension"]


# -- irrelevant input: 200 {"cards": []} ----------------------------------------------------


def with_prefetch(body: dict, pat: dict | None = None, conditions: list | None = None) -> dict:
    body = copy.deepcopy(body)
    body["prefetch"] = {"patient": pat or patient(body["context"]["patientId"]),
                        "conditions": b.bundle(conditions if conditions is not None
                                               else [all_condition(pid=body["context"]["patientId"])])}
    return body


def test_medication_request_selection_from_the_sandbox_rx_view(client):
    body = with_prefetch(b.fixture("sandbox-rx-view-order-select.json"))
    assert call(client, body) == {"cards": []}


def test_hl7_medication_request_selection(client):
    medication = b.fixture(HL7 + "MedicationRequest-medrx0306.json")
    body = hook_request([medication])
    assert body["context"]["selections"] == ["MedicationRequest/medrx0306"]
    assert call(client, body) == {"cards": []}


def test_sandbox_first_pama_call_with_empty_coding(client):
    body = b.fixture("sandbox-pama-first-call.json")
    assert body["context"]["draftOrders"]["entry"][0]["resource"]["code"] == {"coding": [{}]}
    assert call(client, body) == {"cards": []}
    assert call(client, with_prefetch(body)) == {"cards": []}


@pytest.mark.parametrize("code", [{"coding": [{"system": "urn:oid:1.2.840.114350.1.13", "code": "IMG4471"}],
                                   "text": "CT chest (local)"},
                                  {"coding": []}, {"text": "CT chest"}])
def test_unknown_local_or_missing_code(client, code):
    ct = {**order(), "code": code}
    assert call(client, hook_request([ct])) == {"cards": []}


def test_order_without_code(client):
    ct = order()
    del ct["code"]
    assert call(client, hook_request([ct])) == {"cards": []}


# -- discovery and errors ------------------------------------------------------------------


def test_discovery_lists_both_services_with_prefetch(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert services[SELECT]["hook"] == "order-select"
    assert services[SIGN]["hook"] == "order-sign"
    for service in services.values():
        assert service["title"] and service["description"]
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert service["prefetch"]["conditions"] == "Condition?patient={{context.patientId}}"


def assert_operation_outcome(response, status: int) -> str:
    assert response.status_code == status
    assert response.mimetype.endswith("json")
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error" and issue["code"]
    return issue["details"]["text"]


def test_unknown_service_id(client):
    response = post(client, hook_request([order()]), service="no-such-service")
    assert "no-such-service" in assert_operation_outcome(response, 404)


@pytest.mark.parametrize("data", ["{not json", "", '{"hook": "order-select",'])
def test_malformed_json(client, data):
    response = client.post(f"/cds-services/{SELECT}", data=data, content_type="application/json")
    assert "JSON" in assert_operation_outcome(response, 400)


@pytest.mark.parametrize("field", ["hook", "hookInstance", "context"])
def test_envelope_without_required_field(client, field):
    body = hook_request([order()])
    del body[field]
    assert field in assert_operation_outcome(post(client, body), 400)


@pytest.mark.parametrize("body", [[], "order-select", {"hook": "order-select", "hookInstance": "x", "context": []}])
def test_envelope_of_the_wrong_shape(client, body):
    assert_operation_outcome(post(client, body), 400)


def test_hook_that_does_not_match_the_service(client):
    body = hook_request([order()], hook="order-sign")
    assert "order-sign" in assert_operation_outcome(post(client, body, service=SELECT), 400)


# -- real-shaped requests ------------------------------------------------------------------


def sandbox_request(code: str, display: str, reasons: list[dict]) -> dict:
    """The Sandbox PAMA-tab request (cds-hooks.md 12.3) with a chosen study and reasons, plus the
    prefetch its discovery entry asks for: a 7-year-old girl with a new B-ALL."""
    body = b.fixture("sandbox-pama-order-select.json")
    resource = body["context"]["draftOrders"]["entry"][0]["resource"]
    resource["code"] = {"coding": [{"code": code, "display": display, "system": CPT}], "text": display}
    resource["reasonCode"] = reasons
    return with_prefetch(body)


def test_sandbox_pama_request_as_observed_is_not_a_staging_study(client):
    body = with_prefetch(b.fixture("sandbox-pama-order-select.json"))
    assert call(client, body) == {"cards": []}


def test_sandbox_pama_request_for_ct_chest(client):
    result = call(client, sandbox_request("71250", "Computed tomography, thorax; without contrast material", []))
    card = one_card(result)
    assert card["indicator"] == "warning" and UNA in card["summary"]
    # what the Sandbox reads: extension.systemActions only, the first rating
    [action] = result["extension"]["systemActions"]
    assert action["resource"]["id"] == "example-request-id"
    assert pama_rating(action["resource"]) == "not-appropriate"
    # what the Sandbox needs to accept the suggestion without crashing (cds-hooks.md 12.7)
    resource = suggested(card)
    assert resource["id"] == "example-request-id"
    assert resource["code"]["coding"][0]["code"] == "71046"
    assert isinstance(resource["reasonCode"], list)
    assert pama_rating(resource) == "appropriate"
    uuid.UUID(card["uuid"])  # Dismiss is offered only with a card uuid


def test_sandbox_refires_after_the_suggestion_is_accepted(client):
    first = call(client, sandbox_request("71250", "Computed tomography, thorax; without contrast material", []))
    accepted = suggested(one_card(first))
    body = sandbox_request("71250", "-", [])
    body["context"]["draftOrders"]["entry"][0]["resource"] = accepted
    result = call(client, body)
    card = one_card(result)
    assert card["indicator"] == "info" and card["summary"].startswith("Chest radiograph")
    assert ratings(result) == {"example-request-id": "appropriate"}


def test_sandbox_pama_request_with_cough_reason(client, k):
    body = sandbox_request("71260", "Computed tomography, thorax; with contrast material",
                           [reason(SNOMED, "49727002", "Cough (finding)")])
    assert_no_rating_claim(call(client, body), k, "symptomatic", "symptomatic (cough)")


def test_spec_example_lumbar_spine_ct_is_not_a_staging_study(client):
    body = b.fixture("spec-order-select-example.json")
    assert "prefetch" not in body and body["fhirServer"]
    assert call(client, body) == {"cards": []}
    assert call(client, with_prefetch(body)) == {"cards": []}


def hl7_girl(pid: str = "pat1") -> dict:
    girl = b.fixture(HL7 + "Patient-infant-twin-1.json")
    assert (girl["gender"], girl["birthDate"]) == ("female", "2017-05-15")
    girl["id"] = pid
    return girl


def hl7_di(pid: str = "pat1") -> dict:
    order_ = b.fixture(HL7 + "ServiceRequest-di.json")
    assert order_["code"]["coding"] == [{"system": LOINC, "code": "24627-2"}]
    order_["subject"] = {"reference": f"Patient/{pid}"}
    return order_


def test_hl7_chest_ct_order_for_a_girl_with_new_all(app, client):
    pin_clock(app, date(2026, 11, 23))
    di = hl7_di()
    result = call(client, hook_request([di], pat=hl7_girl(), conditions=[all_condition(onset="2026-11-20")]))
    card = one_card(result)
    assert card["indicator"] == "warning"
    assert "**Relied on:** 9-year-old girl;" in card["detail"]
    resource = suggested(card)
    assert resource["code"]["coding"][0]["system"] == LOINC
    assert resource["code"]["coding"][0]["code"] == "36643-5"
    for kept in ("id", "subject", "requester", "occurrenceDateTime", "reasonCode", "status", "intent"):
        assert resource[kept] == di[kept], kept
    assert without_extension(system_action(result, "di")) == di
    assert ratings(result) == {"di": "not-appropriate"}


def test_hl7_chest_ct_suggestion_does_not_keep_a_stale_narrative(app, client):
    pin_clock(app, date(2026, 11, 23))
    result = call(client, hook_request([hl7_di()], pat=hl7_girl(), conditions=[all_condition(onset="2026-11-20")]))
    resource = suggested(one_card(result))
    assert "Chest CT" not in resource.get("text", {}).get("div", "")


def test_hl7_adult_patient_is_out_of_scope(client, k):
    man = b.fixture(HL7 + "Patient-example.json")
    assert man["birthDate"] == "1974-12-25"
    man["id"] = "pat1"
    result = call(client, hook_request([hl7_di()], pat=man))
    assert_no_rating_claim(result, k, "adult", "older than 18")


def test_hl7_patient_as_a_boy_gets_the_male_variant(client):
    boy = b.fixture(HL7 + "Patient-example.json")
    boy["id"], boy["birthDate"] = "pat1", born(9)
    result = call(client, hook_request([order("us-1", "76870")], pat=boy))
    assert one_card(result)["summary"].startswith(f"Scrotal ultrasound: {MBA_D}")
    assert ratings(result) == {"us-1": "appropriate"}


def test_hl7_patient_without_birth_date(client, k):
    pat1 = b.fixture(HL7 + "Patient-pat1.json")
    assert pat1["id"] == "pat1" and "birthDate" not in pat1
    result = call(client, hook_request([hl7_di()], pat=pat1))
    assert_no_rating_claim(result, k, "age-unknown", "no valid birth date recorded")


def test_an_order_for_another_patient_is_not_rated(client):
    other = service_request("ct", "71250", pid="someone-else")
    assert call(client, hook_request([other])) == {"cards": []}


def test_a_birth_date_after_today_is_treated_as_unknown_age(client):
    from datetime import timedelta
    from builders import TODAY, patient
    pat = patient(birth_date=(TODAY + timedelta(days=30)).isoformat())
    result = call(client, hook_request([order("ct", "71250")], pat=pat))
    assert [c["indicator"] for c in result["cards"]] == ["info"]
    assert "birth date" in result["cards"][0]["summary"]
