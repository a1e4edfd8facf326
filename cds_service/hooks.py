"""CDS Hooks 2.0.1 shapes: the services we offer, the request envelope, error bodies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Settings
from .fhir_servers import Refused, normalise
from .knowledge import Release

CDS_HOOKS_VERSION = "2.0.1"  # the specification implemented, in discovery (`version`, as CDS Hooks 3.0 names it)

PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}",
    "medicationAdministrations": "MedicationAdministration?patient={{context.patientId}}",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
}


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str

    def discovery(self, release: Release | None = None) -> dict:
        entry = {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description,
                 "prefetch": PREFETCH, "version": CDS_HOOKS_VERSION,
                "usageRequirements": "Imaging orders as R4 ServiceRequests coded in CPT, LOINC or SNOMED CT; "
                                     "Patient, Conditions, MedicationRequests, MedicationAdministrations, "
                                     "MedicationStatements and Procedures by prefetch or FHIR server access."}
        if release:
            entry["extension"] = {"knowledge-release": {"version": release.version, "digest": release.digest}}
        return entry


_ABOUT = ("ACR Appropriateness Criteria for imaging at initial staging of an asymptomatic child "
          "(18 or younger) with newly diagnosed acute lymphoblastic leukemia. ")
SERVICES = {s.id: s for s in (
    Service("acr-all-staging-order-select", "order-select",
            "ACR imaging guidance: initial staging of pediatric ALL",
            _ABOUT + "Rates the selected imaging order, suggests the lower-dose study where one is rated "
                     "higher, and attaches an Argonaut PAMA rating."),
    Service("acr-all-staging-order-sign", "order-sign",
            "ACR imaging guidance at signing: initial staging of pediatric ALL",
            _ABOUT + "Rates every imaging order in the signing basket and attaches Argonaut PAMA ratings."),
)}


class HookError(Exception):
    """A request the service cannot answer: HTTP status and a message for the OperationOutcome."""

    def __init__(self, status: int, message: str, code: str = "invalid", headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def operation_outcome(message: str, code: str = "invalid", severity: str = "error") -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "details": {"text": message}, "diagnostics": message}]}


@dataclass(frozen=True)
class HookRequest:
    service: Service
    hook_instance: str
    patient_id: str
    fhir_server: str | None
    access_token: str | None
    prefetch: dict
    orders: tuple[dict, ...]   # the ServiceRequests to rate, as sent
    drafts: tuple[dict, ...]   # every ServiceRequest in draftOrders, as sent
    basket: tuple[dict, ...] = ()  # every resource in draftOrders (the whole ordering basket), as sent


def _field(container: dict, name: str, kind: type, path: str, required: bool = True) -> Any:
    value = container.get(name)
    if value is None:
        if required:
            raise HookError(400, f"'{path}' is required")
        return None
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        expected = {str: "a non-empty string", dict: "a JSON object", list: "an array"}[kind]
        raise HookError(400, f"'{path}' must be {expected}")
    return value


@dataclass(frozen=True)
class Limits:
    """How much one hook call may carry; more is refused with 413 naming the limit."""
    orders: int     # draft orders (CDS_MAX_ORDERS)
    resources: int  # entries of one prefetched search (CDS_MAX_RESOURCES)
    codings: int    # codings in the coded elements of one resource (CDS_MAX_CODINGS)
    call_codings: int = Settings.max_call_codings  # codings in all resources of one call: its work budget

    @classmethod
    def of(cls, settings: Settings = Settings()) -> "Limits":
        return cls(settings.max_orders, settings.max_resources, settings.max_codings, settings.max_call_codings)


CODED = ("code", "reasonCode", "clinicalStatus", "verificationStatus", "medicationCodeableConcept")


def coding_count(resource: Any) -> int:
    """Codings in the coded elements the decision reads, however malformed."""
    if not isinstance(resource, dict):
        return 0
    count = 0
    for name in CODED:
        value = resource.get(name)
        if value is None:
            continue
        for concept in value if isinstance(value, list) else (value,):
            if isinstance(concept, dict):
                coding = concept.get("coding")
                count += len(coding) if isinstance(coding, list) else 1
    return count


def check_limits(entries: list, prefetch: dict, limits: Limits) -> None:
    if len(entries) > limits.orders:
        raise HookError(413, f"context.draftOrders has {len(entries)} entries; at most {limits.orders} are "
                             "accepted (CDS_MAX_ORDERS)", "too-costly")
    resources = [e.get("resource") if isinstance(e, dict) else None for e in entries]
    for key, value in prefetch.items():
        found = value.get("entry") if isinstance(value, dict) else None
        if isinstance(found, list):
            if len(found) > limits.resources:
                raise HookError(413, f"prefetch '{key}' has {len(found)} entries; at most {limits.resources} are "
                                     "accepted (CDS_MAX_RESOURCES)", "too-costly")
            resources += [e.get("resource") if isinstance(e, dict) else None for e in found]
        else:
            resources.append(value)
    total = 0
    for resource in resources:
        count = coding_count(resource)
        if count > limits.codings:
            raise HookError(413, f"a resource has more than {limits.codings} codings in its coded elements "
                                 "(CDS_MAX_CODINGS)", "too-costly")
        total += count
    if total > limits.call_codings:  # the work of a call grows with the codings it must read
        raise HookError(413, f"the call carries {total} codings in all; at most {limits.call_codings} are "
                             "accepted (CDS_MAX_CALL_CODINGS)", "too-costly")


def check_fhir_server(url: str, require_https: bool) -> str:
    """The base URL in its normal spelling; 400 when it is not a usable http(s) base URL."""
    try:
        base = normalise(url)
    except Refused as exc:
        raise HookError(exc.status, exc.message) from None
    if require_https and not base.startswith("https://"):
        raise HookError(400, "'fhirServer' must be an https URL")
    return base


def parse(body: Any, service: Service, require_https: bool = False, limits: Limits = Limits.of()) -> HookRequest:
    """Check the envelope and pick out the orders to rate. Irrelevant content is tolerated;
    only what the service cannot work with at all is refused (400)."""
    if not isinstance(body, dict):
        raise HookError(400, "the request body must be a JSON object")
    hook = _field(body, "hook", str, "hook")
    if hook != service.hook:
        raise HookError(400, f"hook '{hook}' does not match service '{service.id}', which answers '{service.hook}'")
    hook_instance = _field(body, "hookInstance", str, "hookInstance")
    context = _field(body, "context", dict, "context")
    patient_id = _field(context, "patientId", str, "context.patientId")
    fhir_server = _field(body, "fhirServer", str, "fhirServer", required=False)
    if fhir_server:
        fhir_server = check_fhir_server(fhir_server, require_https)
    authorization = _field(body, "fhirAuthorization", dict, "fhirAuthorization", required=False) or {}
    token = authorization.get("access_token")
    prefetch = _field(body, "prefetch", dict, "prefetch", required=False) or {}

    draft_bundle = _field(context, "draftOrders", dict, "context.draftOrders", required=False) or {}
    entries = draft_bundle.get("entry") or []
    if not isinstance(entries, list):
        raise HookError(400, "'context.draftOrders.entry' must be an array")
    check_limits(entries, prefetch, limits)
    basket = tuple(r for r in (e.get("resource") for e in entries if isinstance(e, dict)) if isinstance(r, dict))
    drafts = tuple(r for r in basket if r.get("resourceType") == "ServiceRequest")
    if service.hook == "order-select":
        selections = _field(context, "selections", list, "context.selections", required=False) or []
        by_reference = {f"ServiceRequest/{r.get('id')}": r for r in drafts if isinstance(r.get("id"), str)}
        chosen = dict.fromkeys(s for s in selections if isinstance(s, str) and s in by_reference)
        orders = tuple(by_reference[s] for s in chosen)
    else:
        orders = drafts
    return HookRequest(service, hook_instance, patient_id, fhir_server,
                       token if isinstance(token, str) and token else None, prefetch, orders, drafts, basket)
