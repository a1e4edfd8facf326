"""Demo patients: synthetic children (and one adult) covering the scenario, in demo/patients/.

In development mode they are served as a small read-only FHIR R4 server at /demo/fhir (Patient read,
searches of every type the service prefetches, /metadata; CORS open, no authentication), which the CDS
Hooks Sandbox can use as its FHIR server. `cds-service try` fires each of them with each imaging
order at a running service and prints the cards and ratings.

Dates in the files are relative to today, so that a diagnosis stays "new": "{{today}}",
"{{today-2d}}", "{{today-7y-97d}}" (years, months, days before today).
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from flask import Blueprint, Flask, Response, current_app, request

from .hooks import operation_outcome

PREFIX = "/demo/fhir"
FHIR_JSON = "application/fhir+json"
RELATIVE = re.compile(r"\{\{today((?:-\d+[ymd])*)\}\}")
SEARCHABLE = ("Condition", "MedicationRequest", "MedicationAdministration", "MedicationStatement", "Procedure")

bp = Blueprint("cds_demo", __name__, url_prefix=PREFIX)


def default_directory() -> Path:
    return Path(__file__).resolve().parent.parent / "demo" / "patients"


def before(today: date, offsets: str) -> date:
    day = today
    for amount, unit in re.findall(r"-(\d+)([ymd])", offsets):
        amount = int(amount)
        if unit == "d":
            day -= timedelta(days=amount)
        else:
            months = day.year * 12 + day.month - 1 - (amount * 12 if unit == "y" else amount)
            year, month = divmod(months, 12)
            while True:  # the 29th-31st of a shorter month falls back to its last day
                try:
                    day = day.replace(year=year, month=month + 1)
                    break
                except ValueError:
                    day -= timedelta(days=1)
    return day


def resolve(value: Any, today: date) -> Any:
    """The value with every relative date written out."""
    if isinstance(value, str):
        return RELATIVE.sub(lambda m: before(today, m[1]).isoformat(), value)
    if isinstance(value, list):
        return [resolve(v, today) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, today) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class DemoPatient:
    id: str
    shows: str
    resources: tuple[dict, ...]   # with relative dates

    def on(self, today: date) -> list[dict]:
        return resolve(copy.deepcopy(list(self.resources)), today)


@lru_cache(maxsize=4)
def load(directory: str | None = None) -> tuple[DemoPatient, ...]:
    """The demo patients, in file-name order. Each file holds {"shows": ..., "resources": [...]} with the
    Patient first."""
    patients = []
    for path in sorted(Path(directory or default_directory()).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        resources = tuple(data["resources"])
        patient = resources[0]
        if patient.get("resourceType") != "Patient" or patient.get("id") != path.stem:
            raise ValueError(f"{path.name}: the first resource must be the Patient with id {path.stem!r}")
        patients.append(DemoPatient(path.stem, data["shows"], resources))
    return tuple(patients)


# -- the FHIR endpoint (development only) ---------------------------------------------------------

def today() -> date:
    return current_app.extensions["cds"].handler.today()


def fhir(body: dict, status: int = 200) -> Response:
    response = current_app.json.response(body)
    response.status_code = status
    response.mimetype = FHIR_JSON
    return response


def outcome(status: int, message: str, code: str) -> Response:
    return fhir(operation_outcome(message, code), status)


def searchset(resources: list[dict]) -> dict:
    base = request.host_url.rstrip("/") + PREFIX
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "link": [{"relation": "self", "url": request.url}],
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def patient_resources(pid: str) -> list[dict] | None:
    found = next((p for p in load() if p.id == pid), None)
    return found.on(today()) if found else None


@bp.after_request
def open_cors(response: Response) -> Response:
    """The Sandbox reads this server from the browser: any origin, no credentials."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/metadata")
def metadata():
    search = [{"name": "patient", "type": "reference"}, {"name": "subject", "type": "reference"}]
    return fhir({
        "resourceType": "CapabilityStatement", "status": "active", "date": today().isoformat(),
        "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
        "software": {"name": "Demo patients of the ACR ALL staging CDS service (development only)"},
        "implementation": {"description": "Read-only synthetic patients", "url": request.host_url.rstrip("/") + PREFIX},
        "rest": [{"mode": "server", "resource": [
            {"type": "Patient", "interaction": [{"code": "read"}, {"code": "search-type"}],
             "searchParam": [{"name": "_id", "type": "token"}]},
            *({"type": t, "interaction": [{"code": "search-type"}], "searchParam": search} for t in SEARCHABLE)]}],
    })


@bp.get("/Patient")
def patients():
    wanted = request.args.get("_id")
    found = [p.on(today())[0] for p in load() if wanted in (None, p.id)]
    return fhir(searchset(found))


@bp.get("/Patient/<pid>")
def read_patient(pid: str):
    resources = patient_resources(pid)
    if resources is None:
        return outcome(404, f"no demo Patient with id '{pid}'", "not-found")
    return fhir(resources[0])


def search(resource_type: str, params: Callable[[str], str | None]):
    reference = params("patient") or params("subject")
    if not reference:
        return outcome(400, f"a {resource_type} search needs the 'patient' parameter", "required")
    pid = reference.removeprefix(f"{request.host_url.rstrip('/')}{PREFIX}/").removeprefix("Patient/")
    found = [r for r in patient_resources(pid) or [] if r["resourceType"] == resource_type]
    return fhir(searchset(found))


@bp.route("/<resource_type>", methods=["GET"])
def search_get(resource_type: str):
    if resource_type not in SEARCHABLE:
        return outcome(404, f"the demo server has no {resource_type} resources", "not-supported")
    return search(resource_type, request.args.get)


@bp.route("/<resource_type>/_search", methods=["POST"])
def search_post(resource_type: str):
    if resource_type not in SEARCHABLE:
        return outcome(404, f"the demo server has no {resource_type} resources", "not-supported")
    return search(resource_type, lambda name: request.form.get(name) or request.args.get(name))


def register(app: Flask) -> None:
    if not app.extensions["cds"].settings.production:
        app.register_blueprint(bp)


# -- cds-service try ------------------------------------------------------------------------------

def imaging_orders(knowledge) -> list[tuple[str, str, dict]]:
    """(procedure id, label, CPT coding) for each procedure of the knowledge that has a CPT code."""
    first: dict[str, Any] = {}
    for (system, code), procedure in knowledge._procedure_codes.items():
        if system == "cpt" and procedure.id not in first:
            first[procedure.id] = code
    return [(pid, knowledge.procedures[pid].label,
             {"system": knowledge.system_uris["cpt"], "code": code}) for pid, code in first.items()]


def order_select(patient: DemoPatient, coding: dict, today_: date) -> dict:
    resources = patient.on(today_)
    pid = patient.id
    order = {"resourceType": "ServiceRequest", "id": f"try-{coding['code']}", "status": "draft", "intent": "plan",
             "code": {"coding": [coding]}, "subject": {"reference": f"Patient/{pid}"}}

    def bundle(kind: str) -> dict:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in resources if r["resourceType"] == kind]}
    return {"hook": "order-select", "hookInstance": f"try-{pid}-{coding['code']}",
            "context": {"userId": "Practitioner/demo", "patientId": pid, "selections": [f"ServiceRequest/{order['id']}"],
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}},
            "prefetch": {"patient": resources[0], "conditions": bundle("Condition"),
                         "medications": bundle("MedicationRequest"),
                         "medicationAdministrations": bundle("MedicationAdministration"),
                         "medicationStatements": bundle("MedicationStatement"), "procedures": bundle("Procedure")}}


def summarise(status: int, body: Any) -> tuple[str, str]:
    """(cards, PAMA rating) of one answer, for the table."""
    if status != 200 or not isinstance(body, dict):
        return f"HTTP {status}", "-"
    cards = "; ".join(f"{c['indicator']}: {c['summary']}" for c in body.get("cards", [])) or "no card"
    ratings = [cd["code"] for a in body.get("systemActions", []) for e in a["resource"].get("extension", [])
               if e.get("url") == "http://fhir.org/argonaut/Extension/pama-rating"
               for cd in e["valueCodeableConcept"]["coding"]]
    return cards, ratings[0] if ratings else "-"


def table(rows: list[tuple[str, ...]], width: int = 110) -> str:
    header = ("patient", "order", "PAMA", "cards")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = []
    for r in [header, *rows]:
        cards = r[3] if len(r[3]) <= width else r[3][:width - 1] + "…"
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + cards)
        if r is header:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    return "\n".join(lines)


def try_all(discovery_url: str, out=print) -> int:
    """Fire each demo patient with each imaging order at the running service; 0 when every call got an
    answer, 1 otherwise."""
    import requests

    from . import config, knowledge
    settings = config.from_env()
    kb = knowledge.load(settings.knowledge_dir or None)
    session = requests.Session()
    base = discovery_url.rstrip("/")
    try:
        services = session.get(base, timeout=5).json()["services"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        out(f"cannot read the service's discovery at {base}: {exc}")
        return 1
    service = next((s["id"] for s in services if s.get("hook") == "order-select"), None)
    if service is None:
        out(f"{base} offers no order-select service")
        return 1
    rows, failed, today_ = [], 0, date.today()
    for patient in load():
        for pid, label, coding in imaging_orders(kb):
            try:
                response = session.post(f"{base}/{service}", json=order_select(patient, coding, today_), timeout=10)
                body = response.json() if response.headers.get("Content-Type", "").endswith("json") else None
                cards, rating = summarise(response.status_code, body)
            except requests.RequestException as exc:
                cards, rating = f"no answer: {exc.__class__.__name__}", "-"
            failed += cards.startswith(("HTTP", "no answer"))
            rows.append((patient.id, f"{label} (CPT {coding['code']})", rating, cards))
    out(table(rows))
    out(f"\n{len(rows)} calls to {base}/{service}; {failed} without an answer. The patients:")
    for patient in load():
        out(f"  {patient.id}: {patient.shows}")
    return 1 if failed else 0
