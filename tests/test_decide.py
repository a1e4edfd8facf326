"""The decision as pure functions: PatientFacts / Evidence (built by hand or from raw FHIR
resources) and the real knowledge in, scope and findings out. No Flask."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from fhir.resources.R4B.patient import Patient

import builders as b
from cds_service.decide import Order, assess, decide
from cds_service.facts import Evidence as Diagnosis, ConditionRecord, PatientFacts, as_date, condition_evidence, \
    order_indication, patient_facts
from cds_service.knowledge import load
from cds_service.pipeline import match

DAY = date(2026, 3, 15)  # the day of the order in the hand-built cases
CHEST = "all-child-initial-staging-asymptomatic-chest"
MALE = "all-child-male-initial-staging-asymptomatic"
UNA = "Usually not appropriate"
MBA_D = "May be appropriate (Disagreement)"


# -- helpers ------------------------------------------------------------------------------


def diagnosis(kind: str, code: str, system: str = "snomed", display: str = "", clinical: str | None = "active",
              verification: str | None = "confirmed", days_ago: int | None = 3,
              source: str = "Condition/c1") -> Diagnosis:
    return Diagnosis(kind, display or code, system, code, source, clinical, verification,
                     DAY - timedelta(days=days_ago) if days_ago is not None else None)


def all_dx(code: str = "277571004", system: str = "snomed", **kwargs) -> Diagnosis:
    kwargs.setdefault("display", "B-cell acute lymphoblastic leukemia")
    return diagnosis("all", code, system, source=kwargs.pop("source", "Condition/all-1"), **kwargs)


def from_code(k, system_uri: str, code: str, **kwargs) -> Diagnosis:
    """A Diagnosis of the kind the knowledge gives the code."""
    match_ = k.diagnosis_for(system_uri, code)
    assert match_ is not None, (system_uri, code)
    return diagnosis(match_.kind, code, match_.code.system, match_.code.display, **kwargs)


def child(*diagnoses: Diagnosis, years: int = 7, months: int = 0, sex: str | None = "female",
          birth_date: date | None | str = "computed") -> PatientFacts:
    if birth_date == "computed":
        birth_date = date.fromisoformat(b.born(years, months, today=DAY))
    return PatientFacts("pat1", birth_date, sex, tuple(diagnoses))


def orders(k, *procedure_ids: str) -> list[Order]:
    return [Order(f"o{i}", k.procedures[p]) for i, p in enumerate(procedure_ids, 1)]


def decide_one(k, facts: PatientFacts, procedure_id: str, reasons=()):
    decision = decide(facts, orders(k, procedure_id), reasons, k, DAY)
    return decision, (decision.findings[0] if decision.findings else None)


def reason_ids(scope) -> list[str]:
    return [r.reason.id for r in scope.reasons]


def assert_out_of_scope(k, facts: PatientFacts, reason_id: str, reasons=()) -> None:
    """Not in the scenario, for this reason, and no finding (so no card claim and no PAMA rating)."""
    decision = decide(facts, orders(k, "ct-chest", "xr-chest", "us-scrotum"), reasons, k, DAY)
    assert not decision.scope.applies
    assert reason_id in reason_ids(decision.scope)
    assert decision.findings == ()




# -- variant A: chest, any sex ---------------------------------------------------------


@pytest.mark.parametrize("sex", ["female", "male", "other", "unknown", None])
@pytest.mark.parametrize("procedure", ["ct-chest", "pet-ct", "mr-chest"])
def test_chest_cross_sectional_imaging_is_usually_not_appropriate(k, procedure, sex):
    decision, finding = decide_one(k, child(all_dx(), sex=sex), procedure)
    assert decision.scope.applies
    assert finding.rating.rating.label == UNA
    assert finding.rating.rating.indicator == "warning"
    assert finding.rating.variant.id == CHEST and finding.rating.source == "S0"
    assert finding.pama == "not-appropriate"
    assert finding.alternative.id == "xr-chest"
    assert finding.alternative_rating.rating.label == MBA_D
    assert finding.alternative_rating.rating.pama == "appropriate"


@pytest.mark.parametrize("sex", ["female", "male", None])
def test_chest_radiograph_may_be_appropriate_with_disagreement(k, sex):
    _, finding = decide_one(k, child(all_dx(), sex=sex), "xr-chest")
    assert finding.rating.rating.label == MBA_D
    assert finding.rating.rating.indicator == "info"
    assert finding.pama == "appropriate"
    assert finding.alternative is None


def test_nothing_is_ever_usually_appropriate(k):
    for sex in ("female", "male", "unknown", None):
        decision = decide(child(all_dx(), sex=sex), orders(k, *k.procedures), (), k, DAY)
        assert decision.findings
        for finding in decision.findings:
            assert finding.rating is None or finding.rating.rating.label in (UNA, MBA_D)


# -- variant B: boys -------------------------------------------------------------------


def test_boy_scrotal_ultrasound_may_be_appropriate(k):
    _, finding = decide_one(k, child(all_dx(), sex="male"), "us-scrotum")
    assert finding.rating.variant.id == MALE and finding.rating.source == "S1"
    assert finding.rating.rating.label == MBA_D
    assert finding.pama == "appropriate"


def test_boy_ct_abdomen_pelvis_suggests_scrotal_ultrasound(k):
    _, finding = decide_one(k, child(all_dx(), sex="male"), "ct-abd-pelvis-iv")
    assert finding.rating.rating.label == UNA and finding.rating.variant.id == MALE
    assert finding.alternative.id == "us-scrotum"
    assert finding.alternative.order_code["cpt"].code == "76870"
    assert finding.pama == "not-appropriate"


def test_boy_pet_ct_uses_the_chest_variant_which_both_sources_agree_on(k):
    _, finding = decide_one(k, child(all_dx(), sex="male"), "pet-ct")
    assert finding.rating.rating.label == UNA
    assert finding.alternative.id == "xr-chest"


def test_girl_ct_abdomen_pelvis_gets_a_statement_not_a_rating(k):
    _, finding = decide_one(k, child(all_dx(), sex="female"), "ct-abd-pelvis-iv")
    assert finding.rating is None and finding.alternative is None
    assert "no ACR rating for girls" in finding.statement.summary
    assert finding.pama == "no-criteria-apply"


@pytest.mark.parametrize("sex", ["unknown", "other", None])
def test_unknown_sex_gets_nothing_for_male_only_rows_while_chest_rows_still_rate(k, sex):
    decision = decide(child(all_dx(), sex=sex), orders(k, "us-scrotum", "ct-abd-pelvis-iv", "ct-chest"), (), k, DAY)
    assert decision.scope.applies
    assert [f.order_id for f in decision.findings] == ["o3"]
    assert decision.findings[0].pama == "not-appropriate"


@pytest.mark.parametrize("sex", ["female", "male", "unknown", None])
def test_mri_brain_is_information_about_lumbar_puncture_never_a_rating(k, sex):
    _, finding = decide_one(k, child(all_dx(), sex=sex), "mr-brain")
    assert finding.rating is None
    assert "no ACR rating" in finding.statement.summary
    assert "lumbar puncture" in finding.statement.summary
    assert finding.pama == "no-criteria-apply"


def test_girl_pelvic_ultrasound_statement_is_for_girls_only(k):
    _, girl = decide_one(k, child(all_dx(), sex="female"), "us-pelvis")
    assert "ovarian screening is not standard" in girl.statement.summary
    _, boy = decide_one(k, child(all_dx(), sex="male"), "us-pelvis")
    assert boy.statement is None and boy.rating is None


def test_spine_mri_is_in_scope_but_unrated_and_silent(k):
    _, finding = decide_one(k, child(all_dx()), "mr-spine")
    assert finding.rating is None and finding.statement is None
    assert finding.pama == "no-criteria-apply"


# -- scope: the patient in the scenario ------------------------------------------------


def test_in_scope_scope_carries_the_facts_it_relied_on(k):
    scope = assess(child(all_dx(days_ago=4), years=7, sex="female"), (), k, DAY)
    assert scope.applies and scope.relevant and scope.reasons == ()
    assert (scope.age, scope.sex, scope.today) == (7, "female", DAY)
    assert scope.diagnosis_date == DAY - timedelta(days=4)
    assert [d.code for d in scope.diagnoses] == ["277571004"]
    assert scope.symptoms == ()


@pytest.mark.parametrize("years, months, applies", [(18, 0, True), (18, 11, True), (19, 0, False), (1, 0, True)])
def test_age_boundary_in_completed_years(k, years, months, applies):
    facts = child(all_dx(), years=years, months=months)
    scope = assess(facts, (), k, DAY)
    assert scope.age == years
    assert scope.applies is applies
    if not applies:
        assert_out_of_scope(k, facts, "adult")


def test_age_turns_19_on_the_birthday_itself(k):
    the_day_before_19 = assess(child(all_dx(), birth_date=date(2007, 3, 16)), (), k, DAY)
    assert (the_day_before_19.age, the_day_before_19.applies) == (18, True)
    birthday = assess(child(all_dx(), birth_date=date(2007, 3, 15)), (), k, DAY)
    assert (birthday.age, birthday.applies) == (19, False)


def test_missing_birth_date_is_out_of_scope(k):
    assert_out_of_scope(k, child(all_dx(), birth_date=None), "age-unknown")


@pytest.mark.parametrize("system, code", [
    (b.SNOMED, "49727002"),    # cough
    (b.ICD10CM, "R05.1"),      # acute cough
    (b.SNOMED, "267036007"),   # dyspnea
    (b.SNOMED, "25064002"),    # headache
    (b.SNOMED, "12584003"),    # bone pain
    (b.ICD10CM, "R06.1"),      # stridor
])
def test_symptom_condition_takes_the_child_out(k, system, code):
    facts = child(all_dx(), from_code(k, system, code, source="Condition/s1"))
    assert_out_of_scope(k, facts, "symptomatic")


def test_symptom_reason_names_the_symptom(k):
    scope = assess(child(all_dx(), from_code(k, b.SNOMED, "49727002")), (), k, DAY)
    assert scope.reasons[0].summary == "symptomatic (cough), so the workup follows the symptoms"


def test_symptom_given_as_the_order_reason_takes_the_child_out(k):
    reason = from_code(k, b.SNOMED, "49727002", clinical=None, verification=None, days_ago=None,
                       source="reason on ServiceRequest/o1")
    assert_out_of_scope(k, child(all_dx()), "symptomatic", reasons=[reason])


@pytest.mark.parametrize("system, code", [
    (b.SNOMED, "91861009"), (b.ICD10CM, "C92.00"),   # AML
    (b.SNOMED, "92818009"), (b.ICD10CM, "C92.10"),   # CML
    (b.SNOMED, "92814006"), (b.ICD10CM, "C91.10"),   # CLL
])
def test_other_leukemias_take_the_child_out(k, system, code):
    assert_out_of_scope(k, child(all_dx(), from_code(k, system, code)), "excluded-diagnosis")
    assert_out_of_scope(k, child(from_code(k, system, code)), "excluded-diagnosis")


def test_other_leukemia_given_as_the_order_reason_takes_the_child_out(k):
    reason = from_code(k, b.SNOMED, "92818009", source="reason on ServiceRequest/o1")
    assert_out_of_scope(k, child(all_dx()), "excluded-diagnosis", reasons=[reason])


def test_all_in_remission_by_code(k):
    assert_out_of_scope(k, child(from_code(k, b.ICD10CM, "C91.01")), "remission")
    assert_out_of_scope(k, child(from_code(k, b.SNOMED, "91856007")), "remission")


@pytest.mark.parametrize("status", ["remission", "inactive", "resolved"])
def test_all_in_remission_by_clinical_status(k, status):
    assert_out_of_scope(k, child(all_dx(clinical=status)), "remission")


def test_all_in_relapse_by_code(k):
    assert_out_of_scope(k, child(from_code(k, b.ICD10CM, "C91.02")), "relapse")


@pytest.mark.parametrize("status", ["relapse", "recurrence"])
def test_all_in_relapse_by_clinical_status(k, status):
    assert_out_of_scope(k, child(all_dx(clinical=status)), "relapse")


def test_remission_recorded_beside_an_active_all_still_takes_the_child_out(k):
    assert_out_of_scope(k, child(all_dx(), from_code(k, b.ICD10CM, "C91.01")), "remission")


@pytest.mark.parametrize("status", ["unconfirmed", "provisional", "differential"])
def test_unconfirmed_all_is_out_of_scope(k, status):
    assert_out_of_scope(k, child(all_dx(verification=status)), "unconfirmed")


def test_one_confirmed_all_is_enough_beside_a_provisional_one(k):
    scope = assess(child(all_dx(verification="provisional", source="Condition/a1"),
                         all_dx(source="Condition/a2")), (), k, DAY)
    assert scope.applies
    assert [d.source for d in scope.diagnoses] == ["Condition/a2"]


def test_absent_statuses_follow_the_policies(k):
    facts = child(all_dx(clinical=None, verification=None))
    assert k.policies.absent_verification_counts_as_confirmed
    assert k.policies.absent_clinical_status_counts_as_active
    assert assess(facts, (), k, DAY).applies


def test_diagnosis_window_boundary(k):
    window = k.policies.new_within_days
    assert assess(child(all_dx(days_ago=window)), (), k, DAY).applies
    assert_out_of_scope(k, child(all_dx(days_ago=window + 1)), "not-new")
    scope = assess(child(all_dx(days_ago=window + 1)), (), k, DAY)
    assert scope.reasons[0].summary == f"the ALL diagnosis is older than {window} days (not initial staging)"


def test_diagnosis_window_is_configurable(k):
    wider = k.with_overrides(new_within_days=60)
    assert assess(child(all_dx(days_ago=45)), (), wider, DAY).applies
    assert not assess(child(all_dx(days_ago=61)), (), wider, DAY).applies


def test_earliest_all_date_decides_newness(k):
    facts = child(all_dx(days_ago=200, source="Condition/old"), all_dx(days_ago=2, source="Condition/new"))
    scope = assess(facts, (), k, DAY)
    assert scope.diagnosis_date == DAY - timedelta(days=200)
    assert "not-new" in reason_ids(scope)


def test_all_without_any_date_is_out_of_scope(k):
    assert_out_of_scope(k, child(all_dx(days_ago=None)), "date-unknown")


def test_no_all_at_all_is_neither_in_scope_nor_relevant(k):
    for facts in (child(), child(from_code(k, b.SNOMED, "49727002"))):
        decision = decide(facts, orders(k, "ct-chest"), (), k, DAY)
        assert not decision.scope.applies and not decision.scope.relevant
        assert decision.findings == ()


def test_all_only_as_the_order_reason_does_not_establish_the_diagnosis(k):
    reason = all_dx(clinical=None, verification=None, days_ago=None, source="reason on ServiceRequest/o1")
    decision = decide(child(), orders(k, "ct-chest"), [reason], k, DAY)
    assert not decision.scope.applies and not decision.scope.relevant
    assert decision.findings == ()


def test_the_first_reason_in_policy_order_is_the_headline(k):
    facts = child(all_dx(days_ago=90), from_code(k, b.SNOMED, "49727002"), years=30)
    scope = assess(facts, (), k, DAY)
    assert reason_ids(scope) == ["adult", "not-new", "symptomatic"]


# -- facts from FHIR resources ---------------------------------------------------------


def records(*resources: dict) -> list[ConditionRecord]:
    return [ConditionRecord(r) for r in resources]


def test_patient_facts_from_fhir_resources(k):
    pat = Patient.model_validate(b.patient(gender="male", birth_date="2015-06-01"))
    facts = patient_facts(pat, records(b.condition("all-1", "277571004", onset="2026-03-10")), k)
    assert (facts.patient_id, facts.birth_date, facts.sex) == ("pat1", date(2015, 6, 1), "male")
    assert facts.age_on(DAY) == 10
    [dx] = facts.evidence
    assert (dx.kind, dx.system, dx.code, dx.source, dx.exact) == ("all", "snomed", "277571004", "Condition/all-1", True)
    assert (dx.clinical_status, dx.verification_status, dx.date) == ("active", "confirmed", date(2026, 3, 10))


def test_without_a_patient_nothing_is_known():
    facts = patient_facts(None, [], load())
    assert (facts.patient_id, facts.birth_date, facts.sex, facts.evidence) == (None, None, None, ())
    assert facts.age_on(DAY) is None


def test_partial_birth_date_counts_from_its_first_day(k):
    pat = Patient.model_validate(b.patient(birth_date="2007-11"))
    assert patient_facts(pat, [], k).age_on(DAY) == 18
    assert as_date("2007") == date(2007, 1, 1)
    assert as_date("not a date") is None
    assert as_date("2026-11-31") is None


def test_diagnosis_date_falls_back_to_onset_period_then_recorded_date(k):
    resource = b.condition("all-1", "277571004", days_ago=None)
    resource["onsetPeriod"] = {"start": "2026-03-01"}
    assert condition_evidence(resource, k, None)[0].date == date(2026, 3, 1)
    resource = b.condition("all-1", "277571004", days_ago=None)
    resource["recordedDate"] = "2026-03-05T08:30:00Z"
    assert condition_evidence(resource, k, None)[0].date == date(2026, 3, 5)


def test_duplicate_codings_on_one_condition_make_one_diagnosis(k):
    resource = b.all_condition()
    resource["code"]["coding"].append({"system": b.ICD10CM, "code": "C91.00"})
    resource["code"]["coding"].append({"system": b.SNOMED, "code": "91857003"})
    facts = patient_facts(None, records(resource), k)
    assert [(d.kind, d.code) for d in facts.evidence] == [("all", "277571004")]


def test_two_all_conditions_still_give_one_finding_per_order(k):
    facts = child(all_dx(source="Condition/a1"), all_dx("C91.00", "icd10", source="Condition/a2"))
    decision = decide(facts, orders(k, "ct-chest"), (), k, DAY)
    assert len(decision.scope.diagnoses) == 2
    assert [f.order_id for f in decision.findings] == ["o1"]


def test_multiple_orders_get_one_finding_each_in_order(k):
    decision = decide(child(all_dx(), sex="male"),
                      orders(k, "ct-chest", "xr-chest", "us-scrotum", "ct-chest"), (), k, DAY)
    assert [(f.order_id, f.procedure.id, f.pama) for f in decision.findings] == [
        ("o1", "ct-chest", "not-appropriate"), ("o2", "xr-chest", "appropriate"),
        ("o3", "us-scrotum", "appropriate"), ("o4", "ct-chest", "not-appropriate")]


@pytest.mark.parametrize("clinical, verification, counts", [
    ("active", "confirmed", True),
    (None, None, True),
    ("recurrence", "confirmed", True),
    ("resolved", "confirmed", False),
    ("inactive", "confirmed", False),
    ("remission", "confirmed", False),
    ("active", "refuted", False),
    ("active", "entered-in-error", False),
])
def test_which_symptom_conditions_count(k, clinical, verification, counts):
    cough = b.condition("s1", "49727002", clinical=clinical, verification=verification)
    facts = patient_facts(Patient.model_validate(b.patient()),
                          records(b.condition("all-1", "277571004", days_ago=0), cough), k)
    assert any(d.kind == "symptom" for d in facts.evidence) is counts
    assert assess(facts, (), k, b.TODAY).applies is not counts


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_or_erroneous_leukemia_conditions_are_ignored(k, verification):
    wrong_all = b.condition("a0", "277571004", verification=verification, days_ago=0)
    assert condition_evidence(wrong_all, k, None) == []
    wrong_aml = b.condition("x1", "91861009", verification=verification, days_ago=0)
    facts = patient_facts(Patient.model_validate(b.patient()),
                          records(wrong_all, wrong_aml, b.condition("all-1", "277571004", days_ago=0)), k)
    assert assess(facts, (), k, b.TODAY).applies
    only_wrong = patient_facts(Patient.model_validate(b.patient()), records(wrong_all), k)
    scope = assess(only_wrong, (), k, b.TODAY)
    assert not scope.applies and not scope.relevant


# -- the order's own reasons -----------------------------------------------------------


def indication(order: dict, conditions: dict | None = None, k=None):
    return order_indication(order, conditions or {}, k or load(), None)


def test_reason_code_symptom_in_sandbox_shape(k):
    resource = b.service_request("example-request-id", "71250")
    resource["reasonCode"] = [{"coding": [{"code": "49727002", "display": "Cough (finding)",
                                           "system": "http://snomed.info/sct"}], "text": "Cough (finding)"}]
    found = indication(resource, k=k)
    [reason] = found.evidence
    assert (reason.kind, reason.code, reason.source) == ("symptom", "49727002",
                                                         "reason on ServiceRequest/example-request-id")
    assert found.staging is False


def test_reason_code_in_who_icd10_and_several_reasons(k):
    order = b.service_request(reasons=[("http://hl7.org/fhir/sid/icd-10", "R05"), (b.SNOMED, "279039007"),
                                       (b.SNOMED, "91861009")])
    found = indication(order, k=k)
    assert [(r.kind, r.code) for r in found.evidence] == [("symptom", "R05"), ("excluded", "91861009")]
    assert found.staging is False


def test_reason_reference_to_a_patient_condition_counts_whatever_its_status(k):
    resolved_cough = b.condition("s1", "49727002", clinical="resolved")
    order = {**b.service_request(), "reasonReference": [{"reference": "Condition/s1"}]}
    [reason] = indication(order, {"Condition/s1": resolved_cough}, k).evidence
    assert (reason.kind, reason.source) == ("symptom", "reason on ServiceRequest/order-1 (Condition/s1)")
    assert_out_of_scope(k, child(all_dx()), "symptomatic", reasons=[reason])


def test_reason_reference_to_a_refuted_or_unknown_condition_is_no_evidence_and_not_staging(k):
    refuted = b.condition("s1", "49727002", verification="refuted")
    order = {**b.service_request(), "reasonReference": [{"reference": "Condition/s1"}, {"reference": "Condition/elsewhere"}]}
    found = indication(order, {"Condition/s1": refuted}, k)
    assert found.evidence == () and found.staging is False


def test_empty_reason_code_as_the_sandbox_sends_it(k):
    found = indication({**b.service_request(), "reasonCode": []}, k=k)
    assert (found.evidence, found.staging) == ((), None)
    found = indication({**b.service_request(), "reasonCode": [{"coding": [{}]}, {}]}, k=k)
    assert (found.evidence, found.staging) == ((), None)


def test_reason_reference_to_a_contained_condition(k):
    resource = {**b.service_request(),
                "contained": [{"resourceType": "Condition", "id": "r1", "subject": {"reference": "Patient/pat1"},
                               "code": {"coding": [{"system": b.SNOMED, "code": "49727002"}]}}],
                "reasonReference": [{"reference": "#r1"}]}
    assert [(r.kind, r.code) for r in indication(resource, k=k).evidence] == [("symptom", "49727002")]


# -- which procedure an order is (any coding, four systems) ------------------------------


@pytest.mark.parametrize("system, code, procedure, key", [
    (b.CPT, "71250", "ct-chest", "cpt"), (b.CPT, "71260", "ct-chest", "cpt"), (b.CPT, "71270", "ct-chest", "cpt"),
    (b.LOINC, "24627-2", "ct-chest", "loinc"), (b.LOINC, "24628-0", "ct-chest", "loinc"),
    (b.SNOMED, "75385009", "ct-chest", "snomed"), (b.SNOMED, "395081000119108", "ct-chest", "snomed"),
    (b.CPT, "78816", "pet-ct", "cpt"), (b.LOINC, "81555-5", "pet-ct", "loinc"), (b.SNOMED, "443271005", "pet-ct", "snomed"),
    (b.CPT, "71551", "mr-chest", "cpt"), (b.LOINC, "24629-8", "mr-chest", "loinc"),
    (b.SNOMED, "432815006", "mr-chest", "snomed"),
    (b.CPT, "71046", "xr-chest", "cpt"), (b.LOINC, "36643-5", "xr-chest", "loinc"),
    (b.SNOMED, "399208008", "xr-chest", "snomed"),
    (b.CPT, "76870", "us-scrotum", "cpt"), (b.LOINC, "25002-7", "us-scrotum", "loinc"),
    (b.CPT, "74177", "ct-abd-pelvis-iv", "cpt"), (b.SNOMED, "432370003", "ct-abd-pelvis-iv", "snomed"),
    (b.CPT, "70553", "mr-brain", "cpt"), (b.LOINC, "24590-2", "mr-brain", "loinc"),
])
def test_order_matching_in_each_system(k, system, code, procedure, key):
    found = match(b.service_request(code=code, system=system), k)
    assert found is not None
    assert (found[0].id, found[1]) == (procedure, key)


def test_order_with_several_codings_matches_the_first_known_one(k):
    resource = b.service_request()
    resource["code"] = {"coding": [{"system": "urn:oid:1.2.840.114350", "code": "IMG123"},
                                   {"system": b.LOINC, "code": "24627-2"},
                                   {"system": b.CPT, "code": "71260"}]}
    procedure, key = match(resource, k)
    assert (procedure.id, key) == ("ct-chest", "loinc")


@pytest.mark.parametrize("code", [
    {"coding": [{}]},
    {"coding": []},
    {"text": "CT chest"},
    {"coding": [{"system": "urn:oid:1.2.840.114350", "code": "CTCHEST"}]},
    {"coding": [{"system": b.CPT, "code": "72133"}]},
    {"coding": [{"system": b.CPT, "code": 71250}]},
    "CT chest",
    None,
])
def test_orders_that_are_not_known_imaging_studies(k, code):
    resource = b.service_request()
    resource["code"] = code
    assert match(resource, k) is None
