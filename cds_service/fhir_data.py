"""Patient data for a hook call: prefetch first, else the EHR's FHIR server (requests).

Prefetch follows CDS Hooks 2.0.1: an absent key (or one holding an OperationOutcome) was not
supplied, so it is fetched; a null key means there is no such data; an empty Bundle is a real
"nothing found". Only the resources the decision uses are validated with fhir.resources:
Conditions are first filtered on their codes, so a long record costs little.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from .facts import THERAPY_CHANNELS, ConditionRecord, Gap, reference_key
from .knowledge import Knowledge

ABSENT = object()
CHANNELS = (("conditions", "Condition"), ("medications", "MedicationRequest"),
            ("medicationAdministrations", "MedicationAdministration"), ("medicationStatements", "MedicationStatement"),
            ("procedures", "Procedure"))


class DataUnavailable(Exception):
    """Data the decision cannot do without could not be had (answered 412). `reason` says what the FHIR
    server did; it is told only to callers of a FHIR server configured for them."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PatientData:
    patient: Any                              # fhir.resources Patient
    conditions: tuple[ConditionRecord, ...]   # the patient's Conditions as sent
    medications: tuple[dict, ...] | None      # therapy records (and included Medications) as sent; None: none could be had
    gaps: tuple[Gap, ...]                     # what could not be read, or only in part
    fetched: bool                             # whether anything came from the FHIR server
    patient_resource: dict | None = None      # the Patient as sent (its sex extensions)


class FetchError(Exception):
    pass


class FhirClient:
    """Reads and searches on the EHR's FHIR server with one pooled session, short timeouts,
    a per-call deadline and bounded paging. The bearer token goes only to that server."""

    def __init__(self, connect_timeout: float = 0.5, read_timeout: float = 1.0, max_pages: int = 5,
                 page_size: int = 200, session: requests.Session | None = None):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_pages = max_pages
        self.page_size = page_size
        self.session = session or requests.Session()
        # The searches (Conditions and the four therapy records) run here while the Patient is read. Threads start on first use,
        # so a server that forks after loading the app (gunicorn --preload) gets its own.
        self.pool = ThreadPoolExecutor(max_workers=len(CHANNELS), thread_name_prefix="cds-fhir")  # one per search

    def get(self, url: str, token: str | None, deadline: float, params: dict | None = None) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0.01:
            raise FetchError("the hook call's time budget ran out")
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        try:
            response = self.session.get(url, params=params, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            raise FetchError("timed out") from None
        except requests.RequestException:
            raise FetchError("the FHIR server could not be reached") from None
        if response.status_code in (401, 403):
            raise FetchError(f"access was refused (HTTP {response.status_code})")
        if response.status_code == 404:
            raise FetchError("not found (HTTP 404)")
        if response.status_code != 200:
            raise FetchError(f"the FHIR server answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise FetchError("the FHIR server's answer was not JSON") from None
        if not isinstance(data, dict):
            raise FetchError("the FHIR server's answer was not a FHIR resource")
        return data

    def read(self, base: str, path: str, token: str | None, deadline: float) -> dict:
        return self.get(f"{base.rstrip('/')}/{path}", token, deadline)

    def search(self, base: str, resource_type: str, params: dict, token: str | None, deadline: float,
               first_page: dict | None = None) -> tuple[list[dict], str | None]:
        """The resources of all pages (up to max_pages, counting a given first page), and what kept
        the rest from being read, if anything. Pages read before a failure are kept."""
        origin = urlsplit(base)[:2]
        url, query = f"{base.rstrip('/')}/{resource_type}", {**params, "_count": self.page_size}
        resources: list[dict] = []
        bundle = first_page
        for _ in range(self.max_pages):
            try:
                if bundle is None:
                    bundle = self.get(url, token, deadline, query)
                    if bundle.get("resourceType") != "Bundle":
                        raise FetchError("the search did not return a Bundle")
            except FetchError as exc:
                return resources, str(exc)
            resources.extend(entry_resources(bundle))
            url, query, bundle = next_link(bundle), None, None
            if not url:
                return resources, None
            if urlsplit(url)[:2] != origin:
                return resources, "a paging link pointed away from the FHIR server"
        return resources, f"pages beyond the first {self.max_pages} were not read"

    def search_all(self, base: str, resource_type: str, params: dict, token: str | None, deadline: float,
                   first_page: dict | None = None):
        return self.pool.submit(self.search, base, resource_type, params, token, deadline, first_page)


def entry_resources(bundle: dict) -> list[dict]:
    """The resources of a Bundle's entries; an entry that holds no resource object is kept as None,
    so that the reader can say it could not be read."""
    return [e.get("resource") if isinstance(e, dict) and isinstance(e.get("resource"), dict) else None
            for e in listed(bundle.get("entry"))]


def listed(value: Any) -> list:
    return value if isinstance(value, list) else []


def next_link(bundle: dict) -> str | None:
    for link in listed(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def codings(resource: dict) -> list:
    """The raw Coding list of a resource's `code`, or [] when it has none or is malformed."""
    code = resource.get("code")
    found = code.get("coding") if isinstance(code, dict) else None
    return found if isinstance(found, list) else []


def first_error(resource: Any) -> str | None:
    if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
        for issue in listed(resource.get("issue")):
            if isinstance(issue, dict):
                details = issue.get("details")
                text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None)
                if isinstance(text, str):
                    return text
        return "the EHR reported an error"
    return None


class Reader:
    """Validates, with fhir.resources, the elements of a resource that the decision reads; the rest is
    checked only for unknown element names. A Patient with a long address history or a Condition with
    many notes costs no more than a bare one."""

    def __init__(self, model: type, used: tuple[str, ...]):
        self.model = model
        self.known = frozenset({f.alias or name for name, f in model.model_fields.items()} | {"resourceType"})
        self.used = used

    def __call__(self, resource: dict) -> Any:
        """The model of the used elements; ValueError saying what is wrong if the resource is not valid."""
        unknown = resource.keys() - self.known
        if unknown:
            raise ValueError(f"not valid FHIR R4 (unknown element '{sorted(unknown)[0]}')")
        try:
            return self.model.model_validate({k: v for k, v in resource.items() if k.startswith(self.used)})
        except ValidationError as exc:
            raise ValueError(invalid(exc)) from None


read_patient = Reader(Patient, ("resourceType", "id", "gender", "birthDate"))
read_condition = Reader(Condition, ("resourceType", "id", "subject", "code", "clinicalStatus", "verificationStatus",
                                    "onset", "recordedDate"))


def invalid(exc: ValidationError) -> str:
    """Where a resource failed validation, for a note (whole-resource rules have no location)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "resource"
    return f"not valid FHIR R4 ({where}: {error['msg']})"


def about_patient(resource: dict, patient_id: str) -> bool:
    """Whether a resource is about the patient: no subject, or a reference to the patient, relative,
    absolute or versioned (Patient/7/_history/2)."""
    subject = resource.get("subject") or resource.get("patient")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return not isinstance(reference, str) or reference_key(reference) == f"Patient/{patient_id}"


def is_all_coded(resource: dict, knowledge: Knowledge) -> bool:
    return any(isinstance(c, dict) and (m := knowledge.diagnosis_for(c.get("system"), c.get("code"))) and m.kind == "all"
               for c in codings(resource))


def condition_records(resources: list, patient_id: str, knowledge: Knowledge, gaps: list[Gap]) -> list[ConditionRecord]:
    """The patient's Conditions as sent. Those with an ALL code, the only ones that can bring a child
    into scope, are validated; the others are read leniently. Nothing is dropped without a Gap."""
    kept = []
    for resource in resources:
        if resource is None:
            gaps.append(Gap("Condition", "unreadable", "an entry of the Conditions held no resource that could be read"))
            continue
        kind = resource.get("resourceType")
        if kind == "OperationOutcome":
            if any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in listed(resource.get("issue"))):
                gaps.append(Gap("Condition", "unread", f"the Conditions search reported an error: {first_error(resource)}"))
            continue
        if kind != "Condition":
            continue
        name = f"Condition/{resource.get('id', '?')}"
        if not about_patient(resource, patient_id):
            gaps.append(Gap("Condition", "skipped", f"{name} was left out: it is about another patient"))
            continue
        problem = None
        if is_all_coded(resource, knowledge):
            try:
                read_condition(resource)
            except ValueError as exc:
                problem = str(exc)
        kept.append(ConditionRecord(resource, problem))
    return kept


def therapy_records(resources: list, kind: str, patient_id: str, gaps: list[Gap]) -> list[dict]:
    """The therapy records of one search (and the Medications it included); an entry that cannot be read
    is an unclassified Gap (it could be the therapy), one about another patient is left out with a Gap."""
    kept = []
    for resource in resources:
        if resource is None:
            gaps.append(Gap(kind, "unclassified", f"an entry of the {kind} search held no resource that could be read"))
        elif resource.get("resourceType") == "Medication":
            kept.append(resource)  # Medications that the search included are read with the records
        elif resource.get("resourceType") == kind:
            if about_patient(resource, patient_id):
                kept.append(resource)
            else:
                gaps.append(Gap(kind, "skipped", f"{kind}/{resource.get('id', '?')} was left out: it is about "
                                                 "another patient"))
    return kept


def parse_patient(resource: Any, patient_id: str, gaps: list[str]) -> tuple[Any, dict | None]:
    """(the validated Patient, the resource as sent), or (None, None) with a note in `gaps`."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        resource = next((r for r in entry_resources(resource) if r and r.get("resourceType") == "Patient"), None)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        return None, None
    if resource.get("id") not in (None, patient_id):
        gaps.append(f"Patient/{resource.get('id')} skipped: it is not the patient in context")
        return None, None
    try:
        return read_patient(resource), resource
    except ValueError as exc:
        gaps.append(f"Patient record skipped: {exc}")
        return None, None


def prefetched(prefetch: dict, key: str, what: str, gaps: list[Gap]) -> tuple[Any, list, dict | None]:
    """(raw value or ABSENT, resources, a first page whose rest must be read). An OperationOutcome
    counts as absent (the EHR failed to get it), with a Gap saying so if nothing replaces it."""
    raw = prefetch.get(key, ABSENT)
    if error := first_error(raw):
        gaps.append(Gap(what, "unread", f"the {key} prefetch failed in the EHR: {error}"))
        raw = ABSENT
    if isinstance(raw, dict) and raw.get("resourceType") == "Bundle":
        return raw, entry_resources(raw), raw if next_link(raw) else None
    if isinstance(raw, dict):
        return raw, [raw], None
    return raw, [], None


def load(prefetch: dict, patient_id: str, fhir_server: str | None, token: str | None,
         knowledge: Knowledge, client: FhirClient, deadline: float,
         on_fetch: Callable[[str, bool], None] = lambda kind, ok: None) -> PatientData:
    gaps: list[Gap] = []

    # -- Conditions and medications: optional, searched in the background while the Patient is read.
    searches, found, had = {}, {}, {}
    for key, kind in CHANNELS:
        before = len(gaps)
        raw, resources, first_page = prefetched(prefetch, key, kind, gaps)
        found[kind], had[kind] = resources, raw is not ABSENT
        if raw is ABSENT or first_page:
            if fhir_server:
                del gaps[before:]  # the server replaces the failed prefetch
                params = {} if first_page else {"patient": patient_id}
                searches[kind] = client.search_all(fhir_server, kind, params, token, deadline, first_page)
                had[kind] = True
            elif raw is not ABSENT:
                gaps.append(Gap(kind, "unread", f"only the first page of the {key} prefetch was given, and no fhirServer"))
            elif len(gaps) == before:
                gaps.append(Gap(kind, "unread", f"the {key} were not prefetched and no fhirServer was given"))
    fetched = bool(searches)

    # -- the Patient: required ----------------------------------------------------------
    raw_patient = prefetch.get("patient", ABSENT)
    if error := first_error(raw_patient):
        gaps.append(Gap("Patient", "unread", f"the patient prefetch failed in the EHR: {error}"))
        raw_patient = ABSENT
    if raw_patient is None:
        raise DataUnavailable("the EHR's prefetch says there is no Patient record (prefetch 'patient' is null)")
    patient_gaps: list[str] = []
    patient, patient_resource = parse_patient(raw_patient, patient_id, patient_gaps) \
        if raw_patient is not ABSENT else (None, None)
    if patient is None:
        if not fhir_server:
            reason = "it was not prefetched" if raw_patient is ABSENT else "the prefetched one was not a usable Patient"
            raise DataUnavailable(f"Patient/{patient_id} is required and {reason}, and no fhirServer was given")
        try:
            resource = client.read(fhir_server, f"Patient/{patient_id}", token, deadline)
        except FetchError as exc:
            on_fetch("Patient", False)
            raise DataUnavailable(f"Patient/{patient_id} could not be read from the FHIR server", str(exc)) from None
        on_fetch("Patient", True)
        fetched = True
        before = len(patient_gaps)
        patient, patient_resource = parse_patient(resource, patient_id, patient_gaps)
        if patient is None:
            why = patient_gaps[-1] if len(patient_gaps) > before else "the answer was not a Patient"
            raise DataUnavailable(f"Patient/{patient_id} from the FHIR server is unusable", why)
    gaps += [Gap("Patient", "skipped", text) for text in patient_gaps]

    for kind, search in searches.items():
        resources, problem = search.result()
        on_fetch(kind, problem is None)
        found[kind] = resources
        if problem:
            gaps.append(Gap(kind, "unread", f"the {kind} search was not read in full ({len(resources)} entries read): {problem}"))
    conditions = condition_records(found["Condition"], patient_id, knowledge, gaps)
    medications = None
    if any(had[kind] for kind in THERAPY_CHANNELS):
        medications = tuple(r for kind in THERAPY_CHANNELS if had[kind]
                            for r in therapy_records(found[kind], kind, patient_id, gaps))
    return PatientData(patient, tuple(conditions), medications, tuple(gaps), fetched, patient_resource)
