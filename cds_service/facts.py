"""PatientFacts: what the decision needs from the Patient and the Conditions (pure, no I/O)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable

from .knowledge import Knowledge

IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
NOT_CURRENT = {"inactive", "remission", "resolved"}


@dataclass(frozen=True)
class Diagnosis:
    """An ALL diagnosis, an excluded disease or a symptom, as recorded for the patient."""
    kind: str                  # all, all-remission, all-relapse, excluded, symptom
    display: str               # the knowledge base's display for the code
    system: str                # system key: snomed, icd10, cpt, loinc
    code: str                  # the code as recorded
    source: str                # "Condition/123" or "reason on ServiceRequest/abc"
    clinical_status: str | None = None
    verification_status: str | None = None
    date: date | None = None


@dataclass(frozen=True)
class PatientFacts:
    patient_id: str | None
    birth_date: date | None
    sex: str | None            # Patient.gender: male, female, other, unknown, or None
    diagnoses: tuple[Diagnosis, ...]
    gaps: tuple[str, ...] = ()  # what was not available or was skipped, said on the card

    def age_on(self, day: date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def first_code(concept: Any) -> str | None:
    """The first coding's code of a CodeableConcept model (status fields)."""
    if concept is None:
        return None
    for coding in concept.coding or ():
        if coding.code:
            return coding.code
    return None


def as_date(value: Any) -> date | None:
    """A FHIR date/dateTime as a date; partial dates ("2026-11", "2026") take their first day."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        parts = value[:10].split("-")
        try:
            return date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1)
        except (ValueError, IndexError):
            return None
    return None


def condition_date(condition: Any) -> date | None:
    onset = condition.onsetDateTime or (condition.onsetPeriod.start if condition.onsetPeriod else None)
    return as_date(onset) or as_date(condition.recordedDate)


def matches(concepts: Iterable[Any], knowledge: Knowledge) -> list[tuple[Any, Any]]:
    """(coding, DiagnosisMatch) for each coding of the concepts that the knowledge knows; one per kind."""
    found, kinds = [], set()
    for concept in concepts:
        for coding in (concept.coding or ()) if concept is not None else ():
            match = knowledge.diagnosis_for(coding.system, coding.code)
            if match and match.kind not in kinds:
                kinds.add(match.kind)
                found.append((coding, match))
    return found


def condition_diagnoses(condition: Any, knowledge: Knowledge, source: str | None = None) -> list[Diagnosis]:
    """The scenario-relevant diagnoses a Condition records; none if refuted or entered in error,
    and none for a symptom that is no longer current."""
    verification = first_code(condition.verificationStatus)
    if verification in IGNORED_VERIFICATION:
        return []
    clinical = first_code(condition.clinicalStatus)
    source = source or f"Condition/{condition.id}"
    result = []
    for coding, match in matches([condition.code], knowledge):
        if match.kind == "symptom" and clinical in NOT_CURRENT:
            continue
        result.append(Diagnosis(match.kind, match.code.display, match.code.system, coding.code, source,
                                clinical, verification, condition_date(condition)))
    return result


def patient_facts(patient: Any, conditions: Iterable[Any], knowledge: Knowledge,
                  gaps: Iterable[str] = ()) -> PatientFacts:
    diagnoses = []
    for condition in conditions:
        diagnoses.extend(condition_diagnoses(condition, knowledge))
    return PatientFacts(
        patient_id=patient.id if patient else None,
        birth_date=as_date(patient.birthDate) if patient else None,
        sex=patient.gender if patient else None,
        diagnoses=tuple(diagnoses),
        gaps=tuple(gaps),
    )


def order_reasons(order: Any, conditions: dict[str, Any], knowledge: Knowledge) -> list[Diagnosis]:
    """Diagnoses given as the order's reason: reasonCode codings and reasonReference Conditions
    (among the patient's Conditions or contained in the order). A reason is the clinician's
    statement now, so a referenced Condition counts whatever its clinical status."""
    source = f"reason on ServiceRequest/{order.id}"
    result = [Diagnosis(match.kind, match.code.display, match.code.system, coding.code, source)
              for coding, match in matches(order.reasonCode or (), knowledge)]
    contained = {f"#{r.id}": r for r in (order.contained or ()) if r.get_resource_type() == "Condition"}
    for reference in order.reasonReference or ():
        ref = reference.reference or ""
        condition = contained.get(ref) or conditions.get(ref)
        if condition is None or first_code(condition.verificationStatus) in IGNORED_VERIFICATION:
            continue
        for coding, match in matches([condition.code], knowledge):
            result.append(Diagnosis(match.kind, match.code.display, match.code.system, coding.code,
                                    f"{source} ({ref})"))
    return result
