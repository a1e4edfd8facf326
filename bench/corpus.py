"""A corpus of realistic records for the closed world: children in the scenario, shaped as EHRs send
them (problem lists with EHR tags, common findings at diagnosis, supportive medicines, Down syndrome,
infants, the WHO name), and children outside it in the shapes real records take (free text the
vocabulary lacks, codes by chapter, notes, other orders of the basket, contradictions, sex data).

`python -m bench.sensitivity` measures the share of the in-scope records that still get their rating;
tests/test_closed_world.py asserts every record of both sets. Codes here are test data (an EHR's),
not knowledge: the service classifies them by its knowledge/ files.
"""
from __future__ import annotations

import copy
import uuid
from datetime import date, timedelta
from typing import Callable

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
EPIC_LOCAL = "urn:oid:1.2.840.114350.1.13.0.1.7.2.696871"   # an Epic-style local code system
BIRTH_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
SEX_FOR_CLINICAL_USE = "http://hl7.org/fhir/StructureDefinition/patient-sexParameterForClinicalUse"
CT_CHEST = "71260"
CT_ABDOMEN_PELVIS = "74177"


def day(today: date, days_ago: int) -> str:
    return (today - timedelta(days=days_ago)).isoformat()


def birth(today: date, years: int, months: int = 0) -> str:
    month, year = today.month - months, today.year - years
    while month <= 0:
        month, year = month + 12, year - 1
    return date(year, month, min(today.day, 28)).isoformat()


def concept(*codings: tuple[str, str, str], text: str | None = None) -> dict:
    found = {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codings]}
    if text:
        found["text"] = text
    return found


def status(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def condition(cid: str, code: dict, today: date, days_ago: int | None = 5, category: str = "problem-list-item",
              clinical: str | None = "active", verification: str | None = "confirmed", **extra) -> dict:
    resource = {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/pat1"}, "code": code,
                "category": [status(CATEGORY, category, category.replace("-", " ").title())]}
    if clinical:
        resource["clinicalStatus"] = status(CLINICAL, clinical, clinical.title())
    if verification:
        resource["verificationStatus"] = status(VERIFICATION, verification, verification.title())
    if days_ago is not None:
        resource["onsetDateTime"] = day(today, days_ago)
        resource["recordedDate"] = day(today, days_ago)
    resource.update(extra)
    return resource


def epic_all(today: date, code: dict | None = None, **extra) -> dict:
    """A B-ALL problem-list entry as Epic sends it: SNOMED CT and ICD-10-CM, the "(HCC)" tag."""
    code = code or concept((SNOMED, "277571004", "B-cell acute lymphoblastic leukemia"),
                   (ICD10CM, "C91.00", "Acute lymphoblastic leukemia not having achieved remission"),
                   text="B-cell acute lymphoblastic leukemia not having achieved remission (HCC)")
    return condition("all-1", code, today, **extra)


def cerner_all(today: date, **extra) -> dict:
    """An ALL encounter diagnosis as Cerner sends it: ICD-10-CM with its official display."""
    code = concept((ICD10CM, "C91.00", "Acute lymphoblastic leukemia not having achieved remission"),
                   text="Acute lymphoblastic leukemia")
    return condition("all-1", code, today, category="encounter-diagnosis", **extra)


def patient(today: date, gender: str = "female", years: int = 7, months: int = 0, extension=None) -> dict:
    resource = {"resourceType": "Patient", "id": "pat1", "gender": gender, "birthDate": birth(today, years, months),
                "name": [{"family": "Child", "given": ["Test"]}]}
    if extension:
        resource["extension"] = extension
    return resource


def order(oid: str = "order-1", code: str = CT_CHEST, **extra) -> dict:
    resource = {"resourceType": "ServiceRequest", "id": oid, "status": "draft", "intent": "order",
                "code": {"coding": [{"system": CPT, "code": code}]}, "subject": {"reference": "Patient/pat1"}}
    resource.update(extra)
    return resource


def medication(mid: str, name: str, rxnorm: str | None = None, status: str = "active", **extra) -> dict:
    codings = [{"system": RXNORM, "code": rxnorm, "display": name}] if rxnorm else []
    resource = {"resourceType": "MedicationRequest", "id": mid, "status": status, "intent": "order",
                "subject": {"reference": "Patient/pat1"},
                "medicationCodeableConcept": {"coding": codings, "text": name}}
    resource.update(extra)
    return resource


def request(today: date, conditions: list[dict], orders: list[dict] | None = None, pat: dict | None = None,
            medications: list[dict] | None = None, basket: list[dict] | None = None,
            records: dict[str, list[dict]] | None = None, hook: str = "order-select") -> dict:
    """A hook call with every prefetch key the service asks for."""
    orders = orders or [order()]
    drafts = [copy.deepcopy(r) for r in orders + (basket or [])]
    context = {"userId": "Practitioner/123", "patientId": "pat1",
               "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in drafts]}}
    if hook == "order-select":
        context["selections"] = [f"ServiceRequest/{o['id']}" for o in orders]

    def bundle(resources):
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}

    records = records or {}
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": {"patient": pat or patient(today), "conditions": bundle(conditions),
                         "medications": bundle(medications or []),
                         **{key: bundle(records.get(key, []))
                            for key in ("medicationAdministrations", "medicationStatements", "procedures")}}}


def finding(cid: str, today: date, system: str, code: str, display: str, text: str | None = None,
            days_ago: int = 5, **extra) -> dict:
    return condition(cid, concept((system, code, display), text=text), today, days_ago=days_ago, **extra)


# -- children in the scenario: each must get its rating ------------------------------------------

Case = Callable[[date], dict]


def with_findings(*findings: tuple) -> Case:
    return lambda today: request(today, [epic_all(today)] + [finding(f"f{i}", today, *f) for i, f in enumerate(findings)])


IN_SCOPE: dict[str, Case] = {
    "epic-problem-list": lambda t: request(t, [epic_all(t)]),
    "epic-no-verification-status": lambda t: request(t, [epic_all(t, verification=None)]),
    "cerner-encounter-diagnosis": lambda t: request(t, [cerner_all(t)]),
    "snomed-only": lambda t: request(t, [condition("all-1", concept((SNOMED, "91857003", "Acute lymphoid leukemia")), t)]),
    "who-name": lambda t: request(t, [condition("all-1", concept(
        (SNOMED, "277571004", "B-cell acute lymphoblastic leukemia"),
        text="B-lymphoblastic leukemia/lymphoma, NOS"), t)]),
    "t-all-text": lambda t: request(t, [condition("all-1", concept(
        (SNOMED, "91857003", "Acute lymphoid leukemia"), text="Precursor T-cell lymphoblastic leukemia"), t)]),
    "not-yet-in-remission": lambda t: request(t, [condition("all-1", concept(
        (ICD10CM, "C91.00", "Acute lymphoblastic leukemia not having achieved remission"),
        text="B-ALL, not yet in remission"), t)]),
    "anemia-thrombocytopenia-neutropenia": with_findings(
        (ICD10CM, "D64.9", "Anemia, unspecified", "Anemia (HCC)"),
        (ICD10CM, "D69.6", "Thrombocytopenia, unspecified", "Thrombocytopenia (HCC)"),
        (ICD10CM, "D70.9", "Neutropenia, unspecified")),
    "pancytopenia-hyperuricemia": with_findings(
        (ICD10CM, "D61.818", "Other pancytopenia", "Pancytopenia (HCC)"),
        (ICD10CM, "E79.0", "Hyperuricemia without signs of inflammatory arthritis and tophaceous disease")),
    "fatigue-pallor-petechiae": with_findings(
        (ICD10CM, "R53.83", "Other fatigue"), (ICD10CM, "R23.1", "Pallor"),
        (ICD10CM, "R23.3", "Spontaneous ecchymoses", "Petechiae")),
    "hepatosplenomegaly-leukocytosis": with_findings(
        (ICD10CM, "R16.2", "Hepatomegaly with splenomegaly, not elsewhere classified"),
        (ICD10CM, "D72.829", "Elevated white blood cell count, unspecified")),
    "snomed-findings": with_findings((SNOMED, "271737000", "Anemia"), (SNOMED, "302215000", "Thrombocytopenic disorder"),
                                     (SNOMED, "84229001", "Fatigue")),
    "local-code-findings-by-text": with_findings((EPIC_LOCAL, "4471", "Easy bruising"),
                                                 (EPIC_LOCAL, "4472", "Low platelets")),
    "down-syndrome": lambda t: request(t, [epic_all(t), finding("ds", t, ICD10CM, "Q90.9", "Down syndrome, unspecified",
                                                              days_ago=2500)]),
    "down-syndrome-snomed-recent": with_findings((SNOMED, "41040004", "Complete trisomy 21 syndrome", "Down syndrome")),
    "family-history": with_findings((ICD10CM, "Z80.6", "Family history of leukemia"),
                                    (EPIC_LOCAL, "88", "Family history of lymphoma (maternal uncle)")),
    "old-unrelated-problem": lambda t: request(t, [epic_all(t), finding("ecz", t, ICD10CM, "L30.9", "Dermatitis, unspecified",
                                                                      "Eczema", days_ago=1500)]),
    "resolved-otitis": lambda t: request(t, [epic_all(t), finding("om", t, ICD10CM, "H66.90", "Otitis media, unspecified",
                                                                "Recurrent otitis media", days_ago=20,
                                                                clinical="resolved")]),
    "infant": lambda t: request(t, [epic_all(t)], pat=patient(t, years=0, months=7)),
    "adolescent-boy-ct-abdomen": lambda t: request(t, [cerner_all(t)], [order(code=CT_ABDOMEN_PELVIS)],
                                                   pat=patient(t, "male", 17)),
    "supportive-medicines": lambda t: request(t, [epic_all(t)], medications=[
        medication("m1", "allopurinol 100 MG Oral Tablet", "519"),
        medication("m2", "ondansetron 4 MG Oral Tablet", "26225")]),
    "draft-induction-in-basket": lambda t: request(t, [epic_all(t)], basket=[
        medication("m3", "vincristine sulfate 1 MG/ML Injectable Solution", status="draft")]),
    "staging-reason-text": lambda t: request(t, [epic_all(t)], [order(reasonCode=[{"text": "Initial staging of newly "
                                                                                           "diagnosed B-ALL"}])]),
    "staging-reason-coded": lambda t: request(t, [epic_all(t)], [order(reasonCode=[concept(
        (ICD10CM, "C91.00", "Acute lymphoblastic leukemia not having achieved remission"))])]),
    "reason-reference": lambda t: request(t, [epic_all(t)], [order(reasonReference=[{"reference": "Condition/all-1"}])]),
    "order-note-protocol": lambda t: request(t, [epic_all(t)], [order(note=[{"text": "With IV contrast. Staging."}])]),
    "all-note-diagnostics": lambda t: request(t, [epic_all(t, note=[{"text": "Diagnosed by bone marrow aspirate and "
                                                                            "flow cytometry"}])]),
    "boy-birth-sex-agrees": lambda t: request(t, [epic_all(t)], [order(code=CT_ABDOMEN_PELVIS)], pat=patient(
        t, "male", 9, extension=[{"url": BIRTH_SEX, "valueCode": "M"}])),
    "versioned-subject": lambda t: request(t, [{**epic_all(t), "subject": {"reference": "Patient/pat1/_history/3"}}]),
    "order-sign-basket": lambda t: request(t, [epic_all(t)], [order(), order("order-2", "71046")], hook="order-sign"),
}


# -- children outside the scenario: none may be warned or rated ----------------------------------

def unclassified_finding(text: str) -> Case:
    return lambda t: request(t, [epic_all(t), condition("x1", {"text": text}, t)])


def order_reason(text: str) -> Case:
    return lambda t: request(t, [epic_all(t)], [order(reasonCode=[{"text": f"Staging; {text}"}])])


def coded_condition(system: str, code: str, display: str) -> Case:
    return lambda t: request(t, [epic_all(t), finding("x1", t, system, code, display)])


OUT_OF_SCOPE: dict[str, Case] = {
    # 1. text the vocabulary lacks, as problem-list entries and as order reasons
    **{f"text-{w}": unclassified_finding(w) for w in (
        "Unable to lie flat", "widened mediastinum on CXR", "dyspneic", "mediastinal adenopathy",
        "facial plethora, distended neck veins", "enlarged firm left testicle", "Left facial droop", "Cervical LAD",
        "Fever", "Nosebleeds", "Limping", "Won't bear weight on right leg", "Snoring, worse this week")},
    **{f"reason-{w}": order_reason(w) for w in (
        "unable to lie flat", "widened mediastinum", "r/o mass", "worsening cough", "pt with facial swelling")},
    # 2. codes the hand-made lists lack, by the ICD-10 hierarchy
    **{f"icd-{c}": coded_condition(s, c, d) for s, c, d in (
        (ICD10CM, "M54.50", "Low back pain, unspecified"), (ICD10CM, "G43.909", "Migraine, unspecified"),
        (ICD10CM, "J96.00", "Acute respiratory failure"), (ICD10, "G41.9", "Status epilepticus, unspecified"),
        (ICD10CM, "H47.11", "Papilledema associated with increased intracranial pressure"),
        (ICD10CM, "C38.1", "Malignant neoplasm of anterior mediastinum"),
        (ICD10CM, "C91.A0", "Mature B-cell leukemia Burkitt-type not having achieved remission"),
        (ICD10CM, "C94.20", "Acute megakaryoblastic leukemia not having achieved remission"),
        (ICD10CM, "Z85.6", "Personal history of leukemia"), (ICD10CM, "Z94.84", "Stem cells transplant status"),
        (ICD10CM, "T38.0X5A", "Adverse effect of glucocorticoids, initial encounter"),
        (ICD10CM, "Z79.52", "Long term (current) use of systemic steroids"),
        (ICD10CM, "R50.9", "Fever, unspecified"), (ICD10CM, "K35.80", "Unspecified acute appendicitis"))},
    # 3. text matching: hyphens, abbreviations
    **{f"therapy-{w}": unclassified_finding(w) for w in (
        "Vincristine-induced constipation", "PEG-asparaginase given", "Chemotherapy-induced nausea", "s/p Ara-C")},
    "relapsed-text": lambda t: request(t, [epic_all(t, code=concept((SNOMED, "91857003", "Acute lymphoid leukemia"),
                                                                    text="Relapsed B-ALL"))]),
    # 4. elements never read before
    "all-note-symptom": lambda t: request(t, [epic_all(t, note=[{"text": "Mediastinal mass on CXR"}])]),
    "all-stage-unknown": lambda t: request(t, [epic_all(t, stage=[{"summary": {"text": "CNS3, testicular disease"}}])]),
    "all-body-site": lambda t: request(t, [epic_all(t, bodySite=[{"text": "Anterior mediastinum"}])]),
    "all-evidence": lambda t: request(t, [epic_all(t, evidence=[{"code": [{"text": "Stridor"}]}])]),
    "local-status-relapsed": lambda t: request(t, [epic_all(t, clinicalStatus={"coding": [
        {"system": CLINICAL, "code": "active"}, {"system": EPIC_LOCAL, "code": "R", "display": "Relapsed"}]})]),
    "status-text-remission": lambda t: request(t, [epic_all(t, clinicalStatus={
        "coding": [{"system": CLINICAL, "code": "active"}], "text": "In remission"})]),
    "onset-data-absent": lambda t: request(t, [epic_all(t, days_ago=None, recordedDate=day(t, 2), _onsetDateTime={
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]})]),
    "do-not-perform": lambda t: request(t, [epic_all(t)], [order(doNotPerform=True)]),
    "order-note": lambda t: request(t, [epic_all(t)], [order(note=[{"text": "Pt unable to lie flat, please sedate"}])]),
    "order-detail": lambda t: request(t, [epic_all(t)], [order(orderDetail=[{"text": "Airway protocol: stridor"}])]),
    "supporting-info": lambda t: request(t, [epic_all(t)], [order(supportingInfo=[{"display": "CXR: mediastinal mass"}])]),
    "basket-mri-headache": lambda t: request(t, [epic_all(t)], basket=[order("mri-1", "70553", reasonCode=[
        {"text": "Headache"}])]),
    "basket-consult-convulsions": lambda t: request(t, [epic_all(t)], [order()], basket=[
        {**order("neuro-1", "99999"), "code": {"text": "Neurology consult"}, "reasonCode": [{"text": "Convulsions"}]}],
        hook="order-sign"),
    "basket-droop": lambda t: request(t, [epic_all(t)], basket=[order("mri-2", "70553", reasonCode=[
        {"text": "Left facial droop"}])]),
    "basket-unknown-reason": lambda t: request(t, [epic_all(t)], basket=[order("us-3", "76705", reasonCode=[
        {"text": "Parent request"}])]),
    "order-note-unknown": lambda t: request(t, [epic_all(t)], [order(note=[{"text": "Page the resident on arrival"}])]),
    # 5. contradictions
    "active-with-abatement": lambda t: request(t, [epic_all(t, abatementDateTime=day(t, 1))]),
    "onset-in-future": lambda t: request(t, [epic_all(t, days_ago=None, onsetDateTime=day(t, -10))]),
    "recorded-years-before-onset": lambda t: request(t, [epic_all(t, days_ago=None, onsetDateTime=day(t, 3),
                                                                  recordedDate=day(t, 1100))]),
    "suspected-without-verification": lambda t: request(t, [epic_all(t, verification=None, code=concept(
        (SNOMED, "91857003", "Acute lymphoid leukemia"), text="Suspected ALL - bone marrow pending"))]),
    "health-concern-without-verification": lambda t: request(t, [epic_all(t, verification=None,
                                                                          category="health-concern")]),
    # 6. sex for the boys-only ratings
    "boy-birth-sex-female": lambda t: request(t, [epic_all(t)], [order(code=CT_ABDOMEN_PELVIS)], pat=patient(
        t, "male", 9, extension=[{"url": BIRTH_SEX, "valueCode": "F"}])),
    "boy-sex-for-clinical-use-female": lambda t: request(t, [epic_all(t)], [order(code=CT_ABDOMEN_PELVIS)], pat=patient(
        t, "male", 9, extension=[{"url": SEX_FOR_CLINICAL_USE, "extension": [{"url": "value", "valueCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sex-parameter-type", "code": "female-typical"}]}}]}])),
    # 7. the same patient in other forms; medications that cannot be identified
    "versioned-subject-therapy": lambda t: request(t, [epic_all(t)], medications=[medication(
        "m1", "vincristine 1 MG/ML", subject={"reference": "Patient/pat1/_history/2"})]),
    "ingredient-only": lambda t: request(t, [epic_all(t)], medications=[
        {**medication("m1", "x"), "medicationCodeableConcept": None, "medicationReference": {"reference": "#med"},
         "contained": [{"resourceType": "Medication", "id": "med", "ingredient": [
             {"itemCodeableConcept": {"text": "Methotrexate"}}]}]}]),
    "absolute-reference": lambda t: request(t, [epic_all(t)], medications=[
        {**medication("m1", "x"), "medicationCodeableConcept": None,
         "medicationReference": {"reference": "https://ehr.example.org/fhir/Medication/med-9"}},
        {"resourceType": "Medication", "id": "med-9", "code": {"text": "Dexamethasone 4 mg tablet"}}]),
    "unidentified-medication": lambda t: request(t, [epic_all(t)], medications=[
        {**medication("m1", "x"), "medicationCodeableConcept": None,
         "medicationReference": {"reference": "Medication/nowhere"}}]),
    # 8. channels never asked for before
    "administration": lambda t: request(t, [epic_all(t)], records={"medicationAdministrations": [
        {"resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
         "subject": {"reference": "Patient/pat1"}, "effectiveDateTime": day(t, 1),
         "medicationCodeableConcept": {"text": "Prednisone 20 mg"}}]}),
    "statement": lambda t: request(t, [epic_all(t)], records={"medicationStatements": [
        {"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
         "subject": {"reference": "Patient/pat1"}, "medicationCodeableConcept": {"text": "Dexamethasone (outside)"}}]}),
    "intrathecal-procedure": lambda t: request(t, [epic_all(t)], records={"procedures": [
        {"resourceType": "Procedure", "id": "p1", "status": "completed", "subject": {"reference": "Patient/pat1"},
         "code": {"text": "Lumbar puncture with intrathecal methotrexate"}}]}),
}
