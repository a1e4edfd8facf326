"""PatientFacts: what the decision needs from the patient's record (pure, no I/O).

Reading is asymmetric. Evidence that brings a child INTO the scenario (an ALL diagnosis) counts
only from a valid Condition with an exactly coded ALL code and statuses from the HL7 code
systems. Evidence that could take a child OUT (a symptom, another leukemia, remission, relapse,
therapy) is read leniently from the raw JSON: from malformed resources, codings without their
system, and text. Nothing is dropped silently: what could not be read becomes a Gap.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping

from .knowledge import Knowledge

CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL_CODES = {"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
VERIFICATION_CODES = {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}
UNKNOWN = "unknown"  # a status given, but not readable from the HL7 code system
IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
NOT_CURRENT = {"inactive", "remission", "resolved"}
ALL_KINDS = ("all", "all-remission", "all-relapse")
# The vocabularies a code without a known system is tried in, by what it codes.
CONDITION_SYSTEMS = ("snomed", "icd10")
MEDICATION_SYSTEMS = ("rxnorm", "atc")


@dataclass(frozen=True)
class Gap:
    """Something of the record that could not be read, or was read only in part."""
    data: str    # the resource type: Condition, MedicationRequest, Patient
    kind: str    # unread: not read (in full); unreadable: read but not understood;
                 # invalid: not valid R4, read leniently; skipped: not about this patient
    detail: str  # for people: what and why

    @property
    def could_hide_evidence(self) -> bool:
        return self.kind in ("unread", "unreadable")


@dataclass(frozen=True)
class Evidence:
    """A diagnosis, symptom or therapy as the record gives it."""
    kind: str                  # all, all-remission, all-relapse, excluded, symptom, therapy
    display: str               # the knowledge base's display for the code, or the words found
    system: str | None         # system key (snomed, icd10, ...); None when found in text
    code: str | None           # the code as recorded; None when found in text
    source: str                # "Condition/123", "reason on ServiceRequest/abc", "MedicationRequest/9"
    clinical_status: str | None = None      # HL7 code, UNKNOWN, or None when not given
    verification_status: str | None = None  # HL7 code, UNKNOWN, or None when not given
    date: date | None = None   # diagnosis date (ALL kinds); None when it cannot be known
    exact: bool = True         # from a valid resource with a known system: may bring a child in

    @property
    def from_text(self) -> bool:
        return self.code is None


@dataclass(frozen=True)
class PatientFacts:
    patient_id: str | None
    birth_date: date | None
    sex: str | None            # Patient.gender: male, female, other, unknown, or None
    evidence: tuple[Evidence, ...]
    gaps: tuple[Gap, ...] = ()
    medications_read: int | None = None  # MedicationRequests read; None when none could be had

    def age_on(self, day: date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


# -- lenient readers of raw FHIR JSON ------------------------------------------------------

def listed(value: Any) -> list:
    return value if isinstance(value, list) else [value] if isinstance(value, dict) else []


def concept_codings(concept: Any) -> list[dict]:
    """The codings of a CodeableConcept, however malformed (a lone coding object counts)."""
    return [c for c in listed(concept.get("coding")) if isinstance(c, dict)] if isinstance(concept, dict) else []


def concept_texts(concept: Any) -> list[str]:
    """Every text of a CodeableConcept: its text and its codings' displays; a bare string is text."""
    if isinstance(concept, str):
        return [concept]
    if not isinstance(concept, dict):
        return []
    texts = [concept.get("text")] + [c.get("display") for c in concept_codings(concept)]
    return list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))  # each text once


def is_empty(concept: Any) -> bool:
    """A concept that states nothing (the Sandbox sends `coding: [{}]`)."""
    return not any(c.get("code") not in (None, "") for c in concept_codings(concept)) and not concept_texts(concept)


def status(concept: Any, system: str, codes: set[str]) -> str | None:
    """The HL7 status code, wherever its coding stands; UNKNOWN when a status is given but cannot be
    read from the HL7 code system (text only, local code, conflicting codes, a bare string)."""
    if concept is None:
        return None
    found = {c["code"] for c in concept_codings(concept)
             if c.get("system") == system and isinstance(c.get("code"), str) and c["code"] in codes}
    return found.pop() if len(found) == 1 else UNKNOWN


def as_date(value: Any) -> date | None:
    """A FHIR date/dateTime as a date; a partial date ("2026-11", "2026") takes its first day.
    Anything that is not a real calendar date ("2026-11-31", "yesterday") is None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and (found := re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?", value.strip())):
        try:
            return date(int(found[1]), int(found[2] or 1), int(found[3] or 1))
        except ValueError:
            return None
    return None


AGE_UNITS = {"a": "years", "year": "years", "years": "years", "yr": "years", "yrs": "years",
             "mo": "months", "month": "months", "months": "months",
             "wk": "weeks", "week": "weeks", "weeks": "weeks", "d": "days", "day": "days", "days": "days"}


def add_age(born: date | None, age: Any) -> date | None:
    """The day an age (a FHIR Age: value and unit) was reached; None if it cannot be known."""
    if born is None or not isinstance(age, dict):
        return None
    value, unit = age.get("value"), AGE_UNITS.get(str(age.get("code") or age.get("unit") or "").strip().lower())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or unit is None:
        return None
    try:
        if unit in ("years", "months"):
            months = int(value * 12) if unit == "years" else int(value)
            year, month = divmod(born.month - 1 + months, 12)
            day = born.replace(year=born.year + year, month=month + 1, day=1)
            return day + timedelta(days=born.day - 1)  # a birthday on the 31st lands on the 1st after
        return born + timedelta(days=int(value * 7) if unit == "weeks" else int(value))
    except (ValueError, OverflowError):
        return None


def onset_date(resource: dict, born: date | None) -> tuple[bool, date | None]:
    """(whether a date is given, the earliest date it can mean). onset[x] first; recordedDate only
    when no onset[x] is given. A given onset that cannot be read gives (True, None)."""
    onsets = {k: v for k, v in resource.items() if k.startswith("onset")}
    if not onsets:
        if "recordedDate" not in resource:
            return False, None
        return True, as_date(resource["recordedDate"])
    dates = []
    for name, value in onsets.items():
        if name == "onsetDateTime":
            dates.append(as_date(value))
        elif name == "onsetPeriod":
            dates.append(as_date(value.get("start")) if isinstance(value, dict) else None)
        elif name == "onsetAge":
            dates.append(add_age(born, value))
        elif name == "onsetRange":
            dates.append(add_age(born, value.get("low")) if isinstance(value, dict) else None)
        elif name == "onsetString" and isinstance(value, str):
            found = re.search(r"\b(\d{4}(?:-\d{2}(?:-\d{2})?)?)\b", value)
            dates.append(as_date(found[1]) if found else None)
        else:
            dates.append(None)
    return True, None if None in dates else min(dates)


# -- evidence --------------------------------------------------------------------------------

def concept_evidence(concepts: Iterable[Any], knowledge: Knowledge, source: str, exact: bool,
                     systems: tuple[str, ...] = CONDITION_SYSTEMS) -> list[Evidence]:
    """The evidence that the concepts carry, one per kind: coded first (exact only when the system is
    known and `exact`; a code without a known system is tried in `systems`), then text (which only
    ever takes a child out). One pass over the codings gathers the texts (as concept_texts)."""
    found: dict[str, Evidence] = {}
    texts: list[Any] = []
    for concept in concepts:
        if isinstance(concept, str):
            texts.append(concept)
            continue
        if not isinstance(concept, dict):
            continue
        texts.append(concept.get("text"))
        for coding in listed(concept.get("coding")):
            if not isinstance(coding, dict):
                continue
            texts.append(coding.get("display"))  # texts of any JSON type: only strings are read below
            system, code = coding.get("system"), coding.get("code")
            known_system = knowledge.system_key(system) is not None
            match = (knowledge.diagnosis_for(system, code) if known_system
                     else knowledge.diagnosis_in_any_system(code, systems))
            if match and match.kind not in found:
                found[match.kind] = Evidence(match.kind, match.code.display, match.code.system, str(code), source,
                                             exact=exact and known_system)
    for text in dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()):
        for kind, words in knowledge.text_evidence(text):
            if kind not in found:
                found[kind] = Evidence(kind, words, None, None, source, exact=False)
    return list(found.values())


def condition_evidence(resource: dict, knowledge: Knowledge, born: date | None, valid: bool = True,
                       source: str | None = None, as_reason: bool = False) -> list[Evidence]:
    """What a Condition records, read leniently. Refuted and entered-in-error ones record nothing; a
    symptom no longer current is left out, unless the Condition is an order's reason (the clinician's
    statement now)."""
    source = source or f"Condition/{resource.get('id', '?')}"
    evidence = concept_evidence([resource.get("code")], knowledge, source, valid)
    if not evidence:  # most of a record: the statuses and dates need not be read
        return []
    verification = status(resource.get("verificationStatus"), VERIFICATION_SYSTEM, VERIFICATION_CODES)
    if verification in IGNORED_VERIFICATION:
        return []
    clinical = status(resource.get("clinicalStatus"), CLINICAL_SYSTEM, CLINICAL_CODES)
    result = []
    for e in evidence:
        if e.kind == "symptom" and clinical in NOT_CURRENT and not as_reason:
            continue
        given, day = onset_date(resource, born) if e.kind in ALL_KINDS else (False, None)
        result.append(replace(e, clinical_status=clinical, verification_status=verification,
                              date=day if given else None))
    return result


def medication_evidence(resource: dict, knowledge: Knowledge,
                        included: Mapping[str, dict] = {}) -> tuple[list[Evidence], Gap | None]:
    """Whether a MedicationRequest shows ALL therapy; a Gap when its medication cannot be identified.
    A medicationReference is resolved among the contained and the included Medications."""
    name = f"{resource.get('resourceType', 'MedicationRequest')}/{resource.get('id', '?')}"
    if isinstance(resource.get("status"), str) and resource["status"] in knowledge.policies.not_given_statuses:
        return [], None
    concepts = [resource.get("medicationCodeableConcept")]
    reference = resource.get("medicationReference")
    if isinstance(reference, dict):
        contained = {f"#{r.get('id')}": r for r in listed(resource.get("contained")) if isinstance(r, dict)}
        ref = reference.get("reference")
        medication = (contained.get(ref) or included.get(ref)) if isinstance(ref, str) else None
        concepts += [medication.get("code") if medication else None, reference.get("display")]
    if all(is_empty(c) for c in concepts):
        return [], Gap("MedicationRequest", "unreadable", f"{name}: the medication could not be identified")
    return [e for e in concept_evidence(concepts, knowledge, name, False, MEDICATION_SYSTEMS)
            if e.kind == "therapy"], None


@dataclass(frozen=True)
class ConditionRecord:
    """A Condition about the patient as sent, with why it is not valid R4 (None: valid or not checked;
    Conditions that carry an ALL code are always checked)."""
    resource: dict
    invalid: str | None = None


def patient_facts(patient: Any, conditions: Iterable[ConditionRecord], knowledge: Knowledge,
                  gaps: Iterable[Gap] = (), medications: Iterable[dict] | None = None) -> PatientFacts:
    """Facts from a validated Patient model, the raw Conditions and the raw MedicationRequests with any
    Medications the search included (None: no medication data could be had)."""
    born = as_date(patient.birthDate) if patient else None
    evidence, gaps = [], list(gaps)
    for record in conditions:
        found = condition_evidence(record.resource, knowledge, born, valid=record.invalid is None)
        evidence += found
        if record.invalid and found:
            gaps.append(Gap("Condition", "invalid", f"Condition/{record.resource.get('id', '?')} is {record.invalid}; "
                                                    "it was read only for what takes the child out"))
        elif not found and "code" in record.resource and is_empty(record.resource["code"]):
            gaps.append(Gap("Condition", "unreadable",
                            f"Condition/{record.resource.get('id', '?')}: its code could not be read"))
    read = None
    if medications is not None:
        read = 0
        medications = list(medications)
        included = {f"Medication/{r.get('id')}": r for r in medications if r.get("resourceType") == "Medication"}
        for resource in medications:
            if resource.get("resourceType") != "MedicationRequest":
                continue
            found, gap = medication_evidence(resource, knowledge, included)
            evidence += found
            read += 1
            if gap:
                gaps.append(gap)
    return PatientFacts(
        patient_id=patient.id if patient else None,
        birth_date=born,
        sex=patient.gender if patient else None,
        evidence=tuple(evidence),
        gaps=tuple(gaps),
        medications_read=read,
    )


@dataclass(frozen=True)
class Indication:
    """What an order's stated reasons say: evidence about the patient, and whether the order is for
    the leukemia's staging (None: no reason stated)."""
    evidence: tuple[Evidence, ...]
    staging: bool | None
    stated: tuple[str, ...]  # each stated reason, in words, for the card


def order_indication(order: dict, conditions: Mapping[str, dict], knowledge: Knowledge,
                     born: date | None) -> Indication:
    """Read an order's reasonCode and reasonReference (Conditions among the patient's or contained in
    the order). A reason counts as staging only if it is an ALL code or names the leukemia or its
    staging in text, and carries nothing that takes the child out."""
    oid = order.get("id", "?")
    source = f"reason on ServiceRequest/{oid}"
    contained = {f"#{r.get('id')}": r for r in listed(order.get("contained"))
                 if isinstance(r, dict) and r.get("resourceType") == "Condition"}
    evidence: list[Evidence] = []
    staging: list[bool] = []
    stated: list[str] = []
    staging_text = knowledge.policies.staging_text
    for concept in listed(order.get("reasonCode")):
        if is_empty(concept):
            continue
        found = concept_evidence([concept], knowledge, source, False)
        evidence += found
        kinds = {e.kind for e in found}
        words = concept_texts(concept)
        stated.append(words[0] if words else "a coded reason")
        staging.append(kinds <= {"all"} and ("all" in kinds or any(staging_text.search(t) for t in words)))
    for reference in listed(order.get("reasonReference")):
        ref = reference.get("reference") if isinstance(reference, dict) else None
        condition = contained.get(ref) or conditions.get(ref) if isinstance(ref, str) else None
        label = reference.get("display") if isinstance(reference, dict) and isinstance(reference.get("display"), str) else None
        stated.append(label or (ref if isinstance(ref, str) else "a reason that could not be read"))
        if condition is None:
            found = concept_evidence([label], knowledge, source, False) if label else []
            evidence += found
            staging.append(False)  # a reason that cannot be read is not known to be staging
            continue
        found = condition_evidence(condition, knowledge, born, valid=False, source=f"{source} ({ref})", as_reason=True)
        evidence += found
        kinds = {e.kind for e in found}
        staging.append(bool(found) and kinds <= set(ALL_KINDS) and "all" in kinds)
    return Indication(tuple(evidence), all(staging) if staging else None, tuple(stated))
