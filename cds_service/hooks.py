"""CDS Hooks 2.0.1 shapes: the services we offer, the request envelope, error bodies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}",
}


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str

    def discovery(self) -> dict:
        return {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description,
                "prefetch": PREFETCH,
                "usageRequirements": "Imaging orders as R4 ServiceRequests coded in CPT, LOINC or SNOMED CT; "
                                     "Patient, Conditions and MedicationRequests by prefetch or FHIR server access."}


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

    def __init__(self, status: int, message: str, code: str = "invalid"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


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


def check_fhir_server(url: str, require_https: bool) -> None:
    parts = urlsplit(url)
    allowed = ("https",) if require_https else ("http", "https")
    if parts.scheme not in allowed or not parts.netloc:
        raise HookError(400, f"'fhirServer' must be an {' or '.join(allowed)} URL")


def parse(body: Any, service: Service, require_https: bool = False) -> HookRequest:
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
        check_fhir_server(fhir_server, require_https)
    authorization = _field(body, "fhirAuthorization", dict, "fhirAuthorization", required=False) or {}
    token = authorization.get("access_token")
    prefetch = _field(body, "prefetch", dict, "prefetch", required=False) or {}

    draft_bundle = _field(context, "draftOrders", dict, "context.draftOrders", required=False) or {}
    entries = draft_bundle.get("entry") or []
    if not isinstance(entries, list):
        raise HookError(400, "'context.draftOrders.entry' must be an array")
    drafts = tuple(r for r in (e.get("resource") for e in entries if isinstance(e, dict))
                   if isinstance(r, dict) and r.get("resourceType") == "ServiceRequest")
    if service.hook == "order-select":
        selections = _field(context, "selections", list, "context.selections", required=False) or []
        by_reference = {f"ServiceRequest/{r.get('id')}": r for r in drafts if isinstance(r.get("id"), str)}
        chosen = dict.fromkeys(s for s in selections if isinstance(s, str) and s in by_reference)
        orders = tuple(by_reference[s] for s in chosen)
    else:
        orders = drafts
    return HookRequest(service, hook_instance, patient_id, fhir_server,
                       token if isinstance(token, str) and token else None, prefetch, orders, drafts)
