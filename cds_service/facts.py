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
from .knowledge.episode import POSITIVE, icd10cm
from .knowledge.model import tokens

CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL_CODES = {"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
VERIFICATION_CODES = {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}
UNKNOWN = "unknown"  # a status given, but not readable from the HL7 code system
IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
NOT_CURRENT = {"inactive", "remission", "resolved"}
ALL_KINDS = ("all", "all-remission", "all-relapse")
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
CONFIRMING_CATEGORIES = {"problem-list-item", "encounter-diagnosis"}  # where an absent verification means confirmed
EXCLUDING = ("all-remission", "all-relapse", "excluded", "symptom", "therapy")
SCOPE_KINDS = frozenset(ALL_KINDS + EXCLUDING)  # the ALL, or what takes a child out
BIRTH_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
US_CORE_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-sex"
SEX_FOR_CLINICAL_USE = "http://hl7.org/fhir/StructureDefinition/patient-sexParameterForClinicalUse"
ONSETS = ("onsetDateTime", "onsetAge", "onsetPeriod", "onsetRange", "onsetString")  # Condition.onset[x]
THERAPY_CHANNELS = ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Procedure")
# The vocabularies a code without a known system is tried in, by what it codes.
CONDITION_SYSTEMS = ("snomed", "icd10")
MEDICATION_SYSTEMS = ("rxnorm", "atc")


@dataclass(frozen=True)
class Gap:
    """Something of the record that could not be read, or was read only in part."""
    data: str    # the resource type: Condition, MedicationRequest, Patient
    kind: str    # unread: not read (in full); unreadable: read but not understood;
                 # invalid: not valid R4, read leniently; skipped: not about this patient;
                 # unclassified: read, but the closed world cannot account for it (always withholds)
    detail: str  # for people: what and why

    @property
    def could_hide_evidence(self) -> bool:
        return self.kind in ("unread", "unreadable", "unclassified")


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
    contradiction: str | None = None  # why an ALL Condition contradicts itself (it is then not new)

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
    medications_read: int | None = None  # therapy records read (medications, procedures); None: none could be had
    sex_data: tuple[str, ...] = ()       # other recorded sex data (US Core birth sex, sex for clinical use)
    classified: int = 0                  # recent diagnoses positively classified (closed world)

    @property
    def clinical_sex(self) -> str | None:
        """Patient.gender when every recorded sex datum agrees with it; None otherwise."""
        return self.sex if all(d == self.sex for d in self.sex_data) else None

    def age_on(self, day: date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


# -- lenient readers of raw FHIR JSON ------------------------------------------------------

def listed(value: Any) -> list:
    return value if isinstance(value, list) else [value] if isinstance(value, dict) else []


def entries(value: Any) -> list:
    """The items of a repeating element as sent, however malformed: a lone item of any type counts
    (a note sent as a bare string is still read); an absent element has none."""
    return value if isinstance(value, list) else [] if value is None else [value]


def annotation(item: Any) -> Any:
    """The text of an Annotation (a note), or the item itself when it is not one (a bare string is text;
    anything else cannot be read and is named as such)."""
    return item["text"] if isinstance(item, dict) and "text" in item else item


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


def status(concept: Any, system: str, codes: set[str],
           against: Mapping[str, frozenset[str]] | None = None) -> str | None:
    """The HL7 status code, wherever its coding stands; UNKNOWN when a status is given but cannot be
    read from the HL7 code system (text only, local code, conflicting codes, a bare string), or when
    another coding, a display or the text names another status or a negation (`against`: the words
    that contradict each HL7 code): "Relapsed" or "In remission" beside HL7 active. A local code that
    names no status ("A") is let be."""
    if concept is None:
        return None
    codings = concept_codings(concept)
    found = {c["code"] for c in codings
             if c.get("system") == system and isinstance(c.get("code"), str) and c["code"] in codes}
    if len(found) != 1:
        return UNKNOWN
    code = found.pop()
    if against is not None:
        said = [c.get(k) for c in codings for k in ("code", "display")] + [concept.get("text")]
        if any(isinstance(t, str) and t.casefold() != code and against[code].intersection(tokens(t)) for t in said):
            return UNKNOWN
    return code


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
    onsets = {k: resource[k] for k in ONSETS if k in resource}
    if any(f"_{k}" in resource and k not in resource for k in ONSETS):
        return True, None  # an onset marked as absent (data-absent-reason): the date is not known
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
    leukemia = any(kind in ALL_KINDS for kind in found)
    for text in dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()):
        for kind, words in knowledge.text_evidence(text, leukemia):
            if kind not in found:
                found[kind] = Evidence(kind, words, None, None, source, exact=False)
    return list(found.values())


def account(text: str, knowledge: Knowledge, notes: bool = False) -> tuple[bool, bool, bool]:
    """(accounted for, names something positive, uncertain) for a text: accounted when every word is
    covered by the lexicon's ALL names, expected findings, benign conditions, staging or neutral words
    and none is a symptom or (unless `notes`) a word of uncertainty. A family-history clause counts
    as benign."""
    episode = knowledge.episode
    family = episode.family.search(text) is not None
    found, uncovered = episode.lexicon.scan(tokens(episode.family.sub(" ", text)))
    kinds = {f.kind for f in found}
    uncertain = "uncertain" in kinds
    accounted = not uncovered and "symptom" not in kinds and (notes or not uncertain)
    return accounted, family or bool(kinds & set(POSITIVE)), uncertain


def icd_description(code: str) -> str | None:
    try:
        return icd10cm().get_description(code) if icd10cm().is_valid_item(code) else None
    except (ValueError, KeyError):
        return None


def official(concept: Any, knowledge: Knowledge) -> set[str]:
    """The words of the ICD-10-CM descriptions of a concept's codes (a code without a system is tried)."""
    found = set()
    for coding in concept_codings(concept):
        code = coding.get("code")
        if isinstance(code, str) and knowledge.system_key(coding.get("system")) in (None, "icd10") and \
                (description := icd_description(code.strip())):
            found.add(" ".join(tokens(description)))
    return found


def unaccounted_text(concept: Any, knowledge: Knowledge) -> tuple[str | None, bool]:
    """(the first text of a concept the lexicon cannot account for, whether a text names something
    positive). A text that is the official ICD-10-CM description of one of its codes (EHR tags such as
    "(HCC)" aside) is accounted for."""
    descriptions, positive = official(concept, knowledge), False
    for text in concept_texts(concept):
        if " ".join(w for w in tokens(text) if w not in ("hcc", "cms")) in descriptions:
            continue
        accounted, named, _ = account(text, knowledge)
        if not accounted:
            return text, positive
        positive |= named
    return None, positive


def unaccounted(resource: dict, knowledge: Knowledge) -> str | None:
    """What of a Condition's code the closed world cannot account for (its text, or its code), or None.
    Accounted: a coding classified as ALL, an expected finding or a benign condition, or a text made
    only of known words with one of them positive; and every text accounted for."""
    concept = resource.get("code")
    positive, names = False, []
    for coding in concept_codings(concept):
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(code, str) or not code.strip():
            continue
        known = knowledge.system_key(system)
        match = knowledge.diagnosis_for(system, code) if known else \
            knowledge.diagnosis_in_any_system(code, CONDITION_SYSTEMS)
        positive |= bool(match and match.kind in POSITIVE)
        names.append(f"{knowledge.system_names.get(known, 'code')} {code}")
    text, named = unaccounted_text(concept, knowledge)
    if text is not None:
        return text
    if positive or named:
        return None
    texts = concept_texts(concept)
    return texts[0] if texts else (names[0] if names else "a diagnosis without a code or text")


def category_codes(resource: dict) -> set[str]:
    return {c.get("code") for concept in listed(resource.get("category")) for c in concept_codings(concept)
            if c.get("system") == CATEGORY_SYSTEM}


def contradiction(resource: dict, day: date | None, born: date | None, today: date | None) -> str | None:
    """Why an ALL Condition's dates or statuses contradict each other or the calendar, if they do."""
    if any(k.startswith(("abatement", "_abatement")) for k in resource):
        return "it has an abatement although it is recorded as current"
    recorded = as_date(resource.get("recordedDate"))
    if today and day and day > today:
        return "its onset is after today"
    if today and recorded and recorded > today:
        return "its recorded date is after today"
    if born and day and day.year < born.year:  # a partial onset ("2019") counts from its first day
        return "its onset is before the year of birth"
    if recorded and day and recorded < day - timedelta(days=1):
        return "it was recorded before its onset"
    return None


def all_details(resource: dict) -> list[tuple[str, Any]]:
    """The elements of an ALL Condition that say more about it: notes, stage, evidence, body site."""
    found: list[tuple[str, Any]] = [("note", annotation(n)) for n in entries(resource.get("note"))]
    for stage in entries(resource.get("stage")):
        found += [("stage", stage.get("summary")), ("stage", stage.get("type"))] if isinstance(stage, dict) \
            else [("stage", stage)]
    for item in entries(resource.get("evidence")):
        if isinstance(item, dict):
            found += [("evidence", c) for c in entries(item.get("code"))]
            found += [("evidence", d.get("display") if isinstance(d, dict) else d) for d in entries(item.get("detail"))]
        else:
            found.append(("evidence", item))
    found += [("body site", c) for c in entries(resource.get("bodySite"))]
    return [(name, value) for name, value in found if value is not None]


def condition_evidence(resource: dict, knowledge: Knowledge, born: date | None, valid: bool = True,
                       source: str | None = None, as_reason: bool = False, today: date | None = None,
                       gaps: list | None = None) -> list[Evidence]:
    """What a Condition records, read leniently. Refuted and entered-in-error ones record nothing; a
    symptom no longer current is left out, unless the Condition is an order's reason (the clinician's
    statement now). An ALL diagnosis is confirmed only by a confirmed verification status or (status
    absent) a problem-list or encounter-diagnosis entry, and never when its name carries uncertainty;
    its notes, stage, evidence and body site are read too (what they cannot account for goes to `gaps`)."""
    source = source or f"Condition/{resource.get('id', '?')}"
    evidence = concept_evidence([resource.get("code")], knowledge, source, valid)
    if not evidence:  # most of a record: the statuses and dates need not be read
        return []
    words = knowledge.episode.status_words
    verification = status(resource.get("verificationStatus"), VERIFICATION_SYSTEM, VERIFICATION_CODES,
                          words["verification"])
    if verification in IGNORED_VERIFICATION:
        return []
    clinical = status(resource.get("clinicalStatus"), CLINICAL_SYSTEM, CLINICAL_CODES, words["clinical"])
    result = []
    is_all = any(e.kind in ALL_KINDS for e in evidence)
    if is_all:
        if verification is None and not category_codes(resource) & CONFIRMING_CATEGORIES:
            verification = "unconfirmed"  # a health concern, or no category: nothing says it is confirmed
        if any(account(t, knowledge)[2] for t in concept_texts(resource.get("code"))):
            verification = "unconfirmed"  # "Suspected ALL - bone marrow pending"
        elif gaps is not None and (text := unaccounted_text(resource.get("code"), knowledge)[0]):
            gaps.append(Gap("Condition", "unclassified", f"the name of the ALL diagnosis could not be classified: "
                                                         f"'{text[:80]}'"))
        for name, value in all_details(resource):
            found = concept_evidence([value], knowledge, f"{source} ({name})", False)
            evidence += [e for e in found if e.kind in EXCLUDING and e.kind not in {x.kind for x in evidence}]
            if gaps is None or found:
                continue
            if not concept_texts(value) and not concept_codings(value):
                gaps.append(Gap("Condition", "unclassified", f"the {name} of the ALL diagnosis could not be read"))
            for text in concept_texts(value):
                if not account(text, knowledge, notes=True)[0]:
                    gaps.append(Gap("Condition", "unclassified",
                                    f"the {name} of the ALL diagnosis could not be classified: '{text[:80]}'"))
    for e in evidence:
        if e.kind == "symptom" and clinical in NOT_CURRENT and not as_reason:
            continue
        given, day = onset_date(resource, born) if e.kind in ALL_KINDS else (False, None)
        result.append(replace(e, clinical_status=clinical, verification_status=verification,
                              date=day if given else None,
                              contradiction=contradiction(resource, day, born, today) if e.kind == "all" else None))
    return result


REFERENCE = re.compile(r"(?:^|/)((?:Medication|Patient)/[^/]+)(?:/_history/[^/]+)?$")


def reference_key(reference: Any) -> str | None:
    """"Medication/7" for a relative, absolute or versioned reference to it; "#id" stays as it is."""
    if not isinstance(reference, str):
        return None
    if reference.startswith("#"):
        return reference
    found = REFERENCE.search(reference)
    return found[1] if found else None


def medication_concepts(medication: dict | None) -> list[Any]:
    """A Medication's code and its ingredients' codes and names."""
    if not isinstance(medication, dict):
        return []
    concepts = [medication.get("code")]
    for item in listed(medication.get("ingredient")):
        if isinstance(item, dict):
            concepts.append(item.get("itemCodeableConcept"))
            ref = item.get("itemReference")
            concepts.append(ref.get("display") if isinstance(ref, dict) else None)
    return concepts


def medication_evidence(resource: dict, knowledge: Knowledge,
                        included: Mapping[str, dict] = {}) -> tuple[list[Evidence], Gap | None]:
    """Whether a therapy record (a MedicationRequest, MedicationAdministration, MedicationStatement or a
    Procedure) shows ALL therapy; an "unclassified" Gap when what it records cannot be identified (it
    could be the therapy). A medicationReference is resolved among the contained and the included
    Medications, however the reference is written; a Medication is read by its code and ingredients."""
    kind = resource.get("resourceType", "MedicationRequest")
    name = f"{kind}/{resource.get('id', '?')}"
    not_given = knowledge.policies.not_given_statuses.get(kind, frozenset())
    if isinstance(resource.get("status"), str) and resource["status"] in not_given:
        return [], None
    if kind == "Procedure":
        concepts = [resource.get("code")]
        what = "the procedure"
    else:
        concepts = [resource.get("medicationCodeableConcept")]
        reference = resource.get("medicationReference")
        if isinstance(reference, dict):
            contained = {f"#{r.get('id')}": r for r in listed(resource.get("contained")) if isinstance(r, dict)}
            key = reference_key(reference.get("reference"))
            concepts += medication_concepts(contained.get(key) or included.get(key)) + [reference.get("display")]
        what = "the medication"
    if all(is_empty(c) for c in concepts):
        return [], Gap(kind, "unclassified", f"{name}: {what} could not be identified")
    return [e for e in concept_evidence(concepts, knowledge, name, False, MEDICATION_SYSTEMS + CONDITION_SYSTEMS)
            if e.kind == "therapy"], None


def sex_data(resource: dict | None, codes: Mapping[str, str]) -> tuple[str, ...]:
    """Every sex datum the Patient records beside Patient.gender, as male, female or unknown: US Core
    birth sex, US Core sex, and the sex parameter for clinical use (`codes`: what each code means)."""
    found = []
    for ext in entries(resource.get("extension")) if isinstance(resource, dict) else []:
        if not isinstance(ext, dict):
            found.append("unknown")  # an extension that cannot be read could be a sex datum
            continue
        url = ext.get("url")
        if url in (BIRTH_SEX, US_CORE_SEX):
            coding = ext.get("valueCoding")
            value = ext.get("valueCode") or (coding.get("code") if isinstance(coding, dict) else None)
            found.append(codes.get(value, "unknown") if isinstance(value, str) else "unknown")
        elif url == SEX_FOR_CLINICAL_USE:
            values = [v for sub in listed(ext.get("extension")) if isinstance(sub, dict) and sub.get("url") == "value"
                      for v in [sub.get("valueCodeableConcept")]]
            said = {c.get("code") for v in values for c in concept_codings(v)}
            found.append(codes.get(said.pop(), "unknown") if len(said) == 1 and None not in said else "unknown")
    return tuple(found)


@dataclass(frozen=True)
class ConditionRecord:
    """A Condition about the patient as sent, with why it is not valid R4 (None: valid or not checked;
    Conditions that carry an ALL code are always checked)."""
    resource: dict
    invalid: str | None = None


def in_episode(resource: dict, born: date | None, first: date | None, days: int) -> bool:
    """Whether a Condition belongs to the diagnostic episode: dated no more than `days` before the first
    ALL diagnosis date, or with no readable date (it may be recent)."""
    given, day = onset_date(resource, born)
    if not given or day is None or first is None:
        return True
    return day >= first - timedelta(days=days)


def patient_facts(patient: Any, conditions: Iterable[ConditionRecord], knowledge: Knowledge,
                  gaps: Iterable[Gap] = (), medications: Iterable[dict] | None = None,
                  patient_resource: dict | None = None, today: date | None = None) -> PatientFacts:
    """Facts from a validated Patient model (and its raw resource, for the sex data), the raw
    Conditions and the raw therapy records (MedicationRequests, MedicationAdministrations,
    MedicationStatements, Procedures) with any Medications the searches included (None: no such data
    could be had). Closed world: every current Condition of the diagnostic episode that is neither the
    ALL, nor an exclusion, nor positively classified becomes an "unclassified" Gap."""
    born = as_date(patient.birthDate) if patient else None
    evidence, gaps = [], list(gaps)
    candidates: list[dict] = []  # Conditions that are neither the ALL nor an exclusion
    for record in conditions:
        resource = record.resource
        found = condition_evidence(resource, knowledge, born, valid=record.invalid is None, today=today, gaps=gaps)
        evidence += found
        name = f"Condition/{resource.get('id', '?')}"
        if record.invalid and found:
            gaps.append(Gap("Condition", "invalid", f"{name} is {record.invalid}; it was read only for what takes "
                                                    "the child out"))
        if any(e.kind in SCOPE_KINDS for e in found):
            continue
        if "code" in resource and is_empty(resource["code"]):
            gaps.append(Gap("Condition", "unreadable", f"{name}: its code could not be read"))
            continue
        candidates.append(resource)
    # the closed world: the current Conditions of the episode, once the first ALL diagnosis date is known
    first = min((e.date for e in evidence if e.kind in ALL_KINDS and e.date), default=None)
    words = knowledge.episode.status_words
    classified = 0
    for resource in candidates:
        if not in_episode(resource, born, first, knowledge.episode.days_before_diagnosis):
            continue
        verification = status(resource.get("verificationStatus"), VERIFICATION_SYSTEM, VERIFICATION_CODES,
                              words["verification"])
        clinical = status(resource.get("clinicalStatus"), CLINICAL_SYSTEM, CLINICAL_CODES, words["clinical"])
        if verification in IGNORED_VERIFICATION or clinical in NOT_CURRENT:
            continue
        if (what := unaccounted(resource, knowledge)) is None:
            classified += 1
        else:
            gaps.append(Gap("Condition", "unclassified", f"a recent diagnosis could not be classified: '{what[:80]}'"))
    read = None
    if medications is not None:
        read = 0
        medications = list(medications)
        included = {f"Medication/{r.get('id')}": r for r in medications if r.get("resourceType") == "Medication"}
        for resource in medications:
            if resource.get("resourceType") not in THERAPY_CHANNELS:
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
        sex_data=sex_data(patient_resource, knowledge.policies.sex_codes),
        classified=classified,
    )


@dataclass(frozen=True)
class Indication:
    """What an order's stated reasons, notes and details say: evidence about the patient, whether the
    order is for the leukemia's staging (None: no reason stated), and what could not be classified."""
    evidence: tuple[Evidence, ...]
    staging: bool | None
    stated: tuple[str, ...]  # each stated reason, in words, for the card
    unclassified: tuple[Gap, ...] = ()


def order_texts(order: dict) -> list[tuple[str, Any]]:
    """The free text an order carries beside its reasons: notes, order details, supporting-info names."""
    found: list[tuple[str, Any]] = [("note", annotation(n)) for n in entries(order.get("note"))]
    found += [("order detail", c) for c in entries(order.get("orderDetail"))]
    found += [("supporting information", r.get("display") if isinstance(r, dict) else r)
              for r in entries(order.get("supportingInfo"))]
    return [(name, value) for name, value in found if value is not None]


def order_indication(order: dict, conditions: Mapping[str, dict], knowledge: Knowledge,
                     born: date | None, details: bool = True) -> Indication:
    """Read an order's reasonCode and reasonReference (Conditions among the patient's or contained in
    the order), notes, details and supporting information. A reason counts as staging only if it is an
    ALL code or names the leukemia or its staging in text, and carries nothing that takes the child
    out. Closed world: a reason, note or detail whose words the service cannot all account for (and
    that names no exclusion) is unclassified. A do-not-perform order is never a staging order.
    details=False (another order of the basket): its reasons only."""
    oid = order.get("id", "?")
    kind = order.get("resourceType", "ServiceRequest")
    source = f"reason on {kind}/{oid}"
    contained = {f"#{r.get('id')}": r for r in listed(order.get("contained"))
                 if isinstance(r, dict) and r.get("resourceType") == "Condition"}
    evidence: list[Evidence] = []
    staging: list[bool | None] = []  # per reason: staging, another question, or unknown (unclassified)
    stated: list[str] = []
    unclassified: list[Gap] = []
    staging_text = knowledge.policies.staging_text

    def classify(what: str, concept: Any) -> tuple[list[Evidence], bool]:
        """(the concept's evidence, whether it is accounted for); an unclassified Gap when it is not."""
        found = concept_evidence([concept], knowledge, source, False)
        if any(e.kind in EXCLUDING for e in found):
            return found, True
        coded = {e.kind for e in found}
        texts = concept_texts(concept)
        accounted = [account(t, knowledge, notes=what != "reason") for t in texts]
        if not all(a for a, _, _ in accounted) or not (coded & set(POSITIVE) or texts):
            text = next((t for t, (a, _, _) in zip(texts, accounted) if not a), None) or \
                "a code the service does not know"
            unclassified.append(Gap(kind, "unclassified", f"the {what} of {kind}/{oid} could not be classified: "
                                                          f"'{text[:80]}'"))
            return found, False
        return found, True

    for concept in entries(order.get("reasonCode")):
        if is_empty(concept):
            continue
        found, classified = classify("reason", concept)
        evidence += found
        kinds = {e.kind for e in found}
        words = concept_texts(concept)
        stated.append(words[0] if words else "a coded reason")
        staging.append(kinds <= {"all"} and ("all" in kinds or any(staging_text.search(t) for t in words))
                       if classified else None)
    for reference in entries(order.get("reasonReference")):
        ref = reference.get("reference") if isinstance(reference, dict) else None
        condition = contained.get(ref) or conditions.get(ref) if isinstance(ref, str) else None
        label = reference.get("display") if isinstance(reference, dict) and isinstance(reference.get("display"), str) else None
        stated.append(label or (ref if isinstance(ref, str) else "a reason that could not be read"))
        if condition is None:
            found, classified = classify("reason", label) if label else ([], True)
            evidence += found
            staging.append(False if classified else None)  # a reason that cannot be read is not known to be staging
            continue
        found = condition_evidence(condition, knowledge, born, valid=False, source=f"{source} ({ref})", as_reason=True)
        evidence += found
        kinds = {e.kind for e in found}
        if not kinds & SCOPE_KINDS and (what := unaccounted(condition, knowledge)):
            unclassified.append(Gap(kind, "unclassified", f"the reason of {kind}/{oid} could not be classified: "
                                                          f"'{what[:80]}'"))
            staging.append(None)
        else:
            staging.append(bool(found) and kinds <= set(ALL_KINDS) and "all" in kinds)
    for what, value in order_texts(order) if details else ():
        found, classified = classify(what, value)
        evidence += found
        if not classified:
            staging.append(None)
    if order.get("doNotPerform") is True:
        staging.append(False)
    # False when any reason is another question; None when none is, but one could not be classified
    verdict = False if False in staging else None if None in staging or not staging else True
    return Indication(tuple(evidence), verdict, tuple(stated), tuple(unclassified))
