"""The request shapes of the benchmark, shaped as an EHR sends them.

A 7-year-old girl with a new B-cell ALL (confirmed, active, onset a few days ago) and a CT chest
with contrast (CPT 71260) selected: the service answers a warning card suggesting a chest
radiograph. The other Conditions and draft orders are ordinary paediatric and ALL-workup
content from before the diagnostic episode (or resolved), so the service has to read them and let
them go.

Dates are relative to the day of the run, as the service's are.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

PATIENT_ID = "bench-girl-7"
SERVICE_ID = "acr-all-staging-order-select"

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
SR_CATEGORY = "http://snomed.info/sct"

# (SNOMED CT, display, ICD-10-CM): none is in the knowledge's value sets. Every fifth is still active
# (a skin, bowel, weight, attention or dental problem: no exclusion); respiratory ones are resolved.
UNRELATED = [
    ("24079001", "Atopic dermatitis", "L20.9"),
    ("195967001", "Asthma", "J45.909"),
    ("65363002", "Otitis media", "H66.90"),
    ("61582004", "Allergic rhinitis", "J30.9"),
    ("43878008", "Streptococcal sore throat", "J02.0"),
    ("14760008", "Constipation", "K59.00"),
    ("68566005", "Urinary tract infectious disease", "N39.0"),
    ("38907003", "Varicella", "B01.9"),
    ("25374005", "Gastroenteritis", "A08.4"),
    ("9826008", "Conjunctivitis", "H10.9"),
    ("414916001", "Obesity", "E66.9"),
    ("8009008", "Nocturnal enuresis", "N39.44"),
    ("32398004", "Bronchitis", "J20.9"),
    ("36971009", "Sinusitis", "J32.9"),
    ("81000006", "Pediculosis capitis", "B85.0"),
    ("406506008", "Attention deficit hyperactivity disorder", "F90.9"),
    ("125605004", "Fracture of bone", "S52.509A"),
    ("399963005", "Abrasion", "T14.8"),
    ("195662009", "Acute viral pharyngitis", "J02.9"),
    ("235595009", "Gastroesophageal reflux disease", "K21.9"),
    ("80967001", "Dental caries", "K02.9"),
    ("71186008", "Croup", "J05.0"),
    ("48277006", "Impetigo", "L01.00"),
    ("40070004", "Molluscum contagiosum", "B08.1"),
    ("197480006", "Anxiety disorder", "F41.9"),
    ("126485001", "Urticaria", "L50.9"),
    ("444814009", "Viral sinusitis", "J01.90"),
    ("283371005", "Laceration of forearm", "S51.819A"),
    ("10509002", "Acute bronchitis", "J20.9"),
    ("40055000", "Chronic sinusitis", "J32.9"),
]


def _ago(days: int, today: date) -> str:
    return (today - timedelta(days=days)).isoformat()


def birth_date(years: int, today: date) -> str:
    """Exactly `years` old today."""
    return date(today.year - years, today.month, min(today.day, 28)).isoformat()


def patient(today: date) -> dict:
    return {
        "resourceType": "Patient", "id": PATIENT_ID,
        "meta": {"versionId": "3", "lastUpdated": f"{_ago(2, today)}T09:12:44Z"},
        "identifier": [{"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                              "code": "MR", "display": "Medical record number"}]},
                        "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-0042-7731"}],
        "active": True,
        "name": [{"use": "official", "family": "Example", "given": ["Ada", "Marie"]}],
        "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "home"}],
        "gender": "female",
        "birthDate": birth_date(7, today),
        "address": [{"use": "home", "line": ["1 Example Street"], "city": "Springfield", "state": "IL",
                     "postalCode": "62701", "country": "US"}],
        "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                                   "code": "N"}]}],
                     "name": {"family": "Example", "given": ["Grace"]},
                     "telecom": [{"system": "phone", "value": "+1 555 0101"}]}],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]},
                           "preferred": True}],
        "generalPractitioner": [{"reference": "Practitioner/pcp-17", "display": "Dr. Pediatrician"}],
    }


def condition(cid: str, snomed: str, display: str, icd10: str, today: date, onset_days: int,
              clinical: str = "active", category: str = "problem-list-item") -> dict:
    resource = {
        "resourceType": "Condition", "id": cid,
        "meta": {"lastUpdated": f"{_ago(max(onset_days - 1, 0), today)}T10:00:00Z"},
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": SNOMED, "code": snomed, "display": display},
                            {"system": ICD10CM, "code": icd10}],
                 "text": display},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "encounter": {"reference": f"Encounter/enc-{cid}"},
        "onsetDateTime": _ago(onset_days, today),
        "recordedDate": _ago(max(onset_days - 1, 0), today),
        "recorder": {"reference": "Practitioner/pcp-17"},
    }
    if clinical == "resolved":
        resource["abatementDateTime"] = _ago(max(onset_days - 14, 0), today)
    return resource


def all_condition(today: date) -> dict:
    return condition("ball-1", "277571004", "B-cell acute lymphoblastic leukemia", "C91.00", today, onset_days=3)


def conditions(count: int, today: date) -> list[dict]:
    """The ALL and count - 1 unrelated Conditions over the child's life."""
    found = [all_condition(today)]
    for i in range(count - 1):
        snomed, display, icd10 = UNRELATED[i % len(UNRELATED)]
        onset = 120 + (i * 37) % (7 * 365 - 150)   # before the diagnostic episode (episode.toml)
        clinical = "active" if i % 5 == 0 else "resolved"
        category = "problem-list-item" if i % 3 == 0 else "encounter-diagnosis"
        found.append(condition(f"cond-{i + 1}", snomed, display, icd10, today, onset, clinical, category))
    return found


def searchset(resources: list[dict], base: str = "https://ehr.example.org/fhir") -> dict:
    return {"resourceType": "Bundle", "id": str(uuid.UUID(int=len(resources))), "type": "searchset",
            "total": len(resources),
            "link": [{"relation": "self", "url": f"{base}/Condition?patient={PATIENT_ID}"}],
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def ct_chest(today: date) -> dict:
    return {"resourceType": "ServiceRequest", "id": "ct-chest-1", "status": "draft", "intent": "order",
            "category": [{"coding": [{"system": SR_CATEGORY, "code": "363679005", "display": "Imaging"}]}],
            "priority": "routine",
            "code": {"coding": [{"system": CPT, "code": "71260", "display": "CT chest, with contrast"}],
                     "text": "CT chest with contrast"},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "authoredOn": today.isoformat(),
            "requester": {"reference": "Practitioner/onc-1", "display": "Dr. Oncologist"},
            "reasonCode": [{"coding": [{"system": SNOMED, "code": "277571004",
                                        "display": "B-cell acute lymphoblastic leukemia"}]}],
            "reasonReference": [{"reference": "Condition/ball-1"}]}


def lab(sid: str, loinc: str, display: str, today: date) -> dict:
    return {"resourceType": "ServiceRequest", "id": sid, "status": "draft", "intent": "order",
            "category": [{"coding": [{"system": SR_CATEGORY, "code": "108252007",
                                      "display": "Laboratory procedure"}]}],
            "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PATIENT_ID}"}, "authoredOn": today.isoformat(),
            "requester": {"reference": "Practitioner/onc-1"}}


def procedure(sid: str, cpt: str, display: str, today: date) -> dict:
    return {"resourceType": "ServiceRequest", "id": sid, "status": "draft", "intent": "order",
            "code": {"coding": [{"system": CPT, "code": cpt, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PATIENT_ID}"}, "authoredOn": today.isoformat(),
            "requester": {"reference": "Practitioner/onc-1"}}


def medication(mid: str, rxnorm: str, display: str, dose: str, today: date) -> dict:
    return {"resourceType": "MedicationRequest", "id": mid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm, "display": display}],
                                          "text": display},
            "subject": {"reference": f"Patient/{PATIENT_ID}"}, "authoredOn": today.isoformat(),
            "requester": {"reference": "Practitioner/onc-1"},
            "dosageInstruction": [{"text": dose}]}


def draft_orders(count: int, today: date) -> list[dict]:
    """The CT chest first, then the rest of an ALL work-up (labs, procedures, medications)."""
    others = [
        lab("cbc-1", "58410-2", "CBC panel - Blood by Automated count", today),
        medication("allopurinol-1", "197319", "Allopurinol 100 MG Oral Tablet", "100 mg by mouth three times daily", today),
        lab("cmp-1", "24323-8", "Comprehensive metabolic panel", today),
        lab("urate-1", "3084-1", "Urate [Mass/volume] in Serum or Plasma", today),
        lab("ldh-1", "14804-9", "Lactate dehydrogenase [Enzymatic activity/volume]", today),
        lab("pt-1", "5902-2", "Prothrombin time (PT)", today),
        lab("ptt-1", "14979-9", "aPTT in Platelet poor plasma", today),
        lab("fib-1", "3255-7", "Fibrinogen [Mass/volume] in Platelet poor plasma", today),
        lab("abo-1", "882-1", "ABO and Rh group [Type] in Blood", today),
        lab("hbsag-1", "5196-1", "Hepatitis B virus surface Ag [Presence] in Serum", today),
        procedure("bma-1", "38220", "Bone marrow aspiration", today),
        procedure("lp-1", "62270", "Lumbar puncture, diagnostic", today),
        procedure("echo-1", "93306", "Echocardiography, transthoracic, complete", today),
        procedure("cvc-1", "36561", "Insertion of tunneled central venous access device", today),
        medication("ondansetron-1", "312086", "Ondansetron 4 MG Oral Tablet", "4 mg by mouth every 8 hours as needed", today),
        medication("dexa-1", "197582", "Dexamethasone 1 MG Oral Tablet", "6 mg/m2/day in divided doses", today),
        medication("vcr-1", "1863343", "Vincristine 1 MG/ML Injectable Solution", "1.5 mg/m2 IV push, day 1", today),
        medication("peg-1", "1729106", "Pegaspargase 750 UNT/ML Injectable Solution", "2500 IU/m2 IM, day 4", today),
        medication("smx-1", "198335", "Sulfamethoxazole 400 MG / Trimethoprim 80 MG Oral Tablet", "weekend prophylaxis", today),
    ]
    extra = [dict(o, id=f"{o['id']}-{n // len(others) + 1}") for n, o in enumerate(others * 1000)][len(others):]
    return [ct_chest(today)] + (others + extra)[:count - 1]   # past 20: the work-up again, other ids


def hook_request(orders: list[dict], today: date, record: list[dict] | None,
                 fhir_server: str | None = None) -> dict:
    """An order-select call with the CT chest selected; prefetch when record is given."""
    body = {
        "hook": "order-select",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/onc-1", "patientId": PATIENT_ID,
                    "encounterId": "enc-admission-1",
                    "selections": ["ServiceRequest/ct-chest-1"],
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": o} for o in orders]}},
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
    if record is not None:
        body["prefetch"] = {"patient": patient(today), "conditions": searchset(record)}
    return body


@dataclass(frozen=True)
class Shape:
    name: str
    title: str
    body: bytes


def build(today: date, stub_base: str) -> list[Shape]:
    typical = conditions(10, today)
    return [
        Shape("typical", "typical: 10 Conditions, 3 draft orders, full prefetch",
              encode(hook_request(draft_orders(3, today), today, typical))),
        Shape("long", "long record: 300 Conditions, 20 draft orders, full prefetch",
              encode(hook_request(draft_orders(20, today), today, conditions(300, today)))),
        Shape("no-prefetch", "no prefetch: typical, Patient and Conditions read from the stub FHIR server",
              encode(hook_request(draft_orders(3, today), today, None, fhir_server=stub_base))),
    ]


# (Conditions, draft orders): 1,000 is CDS_MAX_RESOURCES, 100 is CDS_MAX_ORDERS
SCALING = [(10, 3), (100, 3), (1000, 3), (10, 20), (10, 50), (10, 100)]


def scaling(today: date) -> list[Shape]:
    """The typical call with more Conditions, then with more draft orders (the CT chest selected)."""
    return [Shape(f"scale-{c}-{d}", f"{c} Conditions, {d} draft orders",
                  encode(hook_request(draft_orders(d, today), today, conditions(c, today)))) for c, d in SCALING]


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
