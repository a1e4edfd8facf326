"""Builders for real-shaped FHIR R4 resources and CDS Hooks requests used across the tests."""
from __future__ import annotations

import copy
import json
import uuid
from datetime import date, timedelta
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
SELECT = "acr-all-staging-order-select"
SIGN = "acr-all-staging-order-sign"

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
PAMA_URL = "http://fhir.org/argonaut/Extension/pama-rating"
PAMA_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
TODAY = date.today()  # the app under test is pinned to this day by conftest


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def born(years: int, months: int = 0, today: date = TODAY) -> str:
    """A birth date that makes the patient exactly `years` and `months` old on `today`."""
    month = today.month - months
    year = today.year - years
    while month <= 0:
        month += 12
        year -= 1
    return date(year, month, min(today.day, 28)).isoformat()


def patient(pid: str = "pat1", gender: str | None = "female", birth_date: str | None = born(7)) -> dict:
    resource = {"resourceType": "Patient", "id": pid, "name": [{"given": ["Test"], "family": "Child"}]}
    if gender:
        resource["gender"] = gender
    if birth_date:
        resource["birthDate"] = birth_date
    return resource


def condition(cid: str, code: str, system: str = SNOMED, pid: str = "pat1", clinical: str | None = "active",
              verification: str | None = "confirmed", onset: str | None = None, days_ago: int | None = 3,
              display: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    resource = {"resourceType": "Condition", "id": cid, "code": {"coding": [coding]},
                "subject": {"reference": f"Patient/{pid}"}}
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification:
        resource["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    if onset:
        resource["onsetDateTime"] = onset
    elif days_ago is not None:
        resource["onsetDateTime"] = (TODAY - timedelta(days=days_ago)).isoformat()
    return resource


def all_condition(cid: str = "all-1", **kwargs) -> dict:
    return condition(cid, "277571004", display="B-cell acute lymphoblastic leukemia", **kwargs)


def service_request(sid: str = "order-1", code: str = "71260", system: str = CPT, pid: str = "pat1",
                    reasons: list[tuple[str, str]] | None = None) -> dict:
    resource = {"resourceType": "ServiceRequest", "id": sid, "status": "draft", "intent": "plan",
                "code": {"coding": [{"system": system, "code": code}]},
                "subject": {"reference": f"Patient/{pid}"}}
    if reasons is not None:
        resource["reasonCode"] = [{"coding": [{"system": s, "code": c}]} for s, c in reasons]
    return resource


def bundle(resources: list[dict], kind: str = "searchset") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def hook_request(orders: list[dict], selections: list[str] | None = None, pat: dict | None = None,
                 conditions: list[dict] | None = None, hook: str = "order-select", pid: str = "pat1",
                 prefetch: bool = True, fhir_server: str | None = None, medications: list[dict] | None = None,
                 records: dict[str, list[dict]] | None = None) -> dict:
    """A request as an EHR sends it, with every prefetch key the service asks for (medications and the
    other therapy records, `records` by prefetch key: none unless given). selections default to every
    order (order-select only)."""
    context = {"userId": "Practitioner/123", "patientId": pid,
               "draftOrders": {"resourceType": "Bundle", "type": "collection",
                               "entry": [{"resource": copy.deepcopy(o)} for o in orders]}}
    if hook == "order-select":
        context["selections"] = selections if selections is not None else [
            f"{o['resourceType']}/{o['id']}" for o in orders]
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server:
        body["fhirServer"] = fhir_server
    if prefetch:
        body["prefetch"] = {"patient": pat if pat is not None else patient(pid),
                            "conditions": bundle(conditions if conditions is not None else [all_condition(pid=pid)]),
                            "medications": bundle(medications or []),
                            **{key: bundle((records or {}).get(key, []))
                               for key in ("medicationAdministrations", "medicationStatements", "procedures")}}
    return body


def cards(response) -> list[dict]:
    """The cards of a 200 answer (asserting it is one)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body["cards"], list)
    return body["cards"]


def warning_cards(response) -> list[dict]:
    return [c for c in cards(response) if c["indicator"] == "warning"]


def pama_rating(resource: dict) -> str | None:
    codes = [coding["code"] for e in resource.get("extension", []) if e.get("url") == PAMA_URL
             for coding in e["valueCodeableConcept"]["coding"] if coding["system"] == PAMA_SYSTEM]
    assert len(codes) <= 1, "one pama-rating extension at most"
    return codes[0] if codes else None


def ratings(result) -> dict[str, str]:
    """The PAMA rating per ServiceRequest id (of a response or its JSON); both places must carry the
    same actions."""
    if not isinstance(result, dict):
        assert result.status_code == 200, result.get_data(as_text=True)
        result = result.get_json()
    if "systemActions" not in result:
        assert "systemActions" not in result.get("extension", {})
        return {}
    assert result["systemActions"] == result["extension"]["systemActions"]
    found = {}
    for action in result["systemActions"]:
        assert action["type"] == "update" and action["description"]
        found[action["resource"]["id"]] = pama_rating(action["resource"])
    return found
