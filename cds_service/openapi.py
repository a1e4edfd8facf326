"""The OpenAPI 3.1 document of the service's HTTP API, at GET /openapi.json.

The development-only routes (explain, the demo FHIR endpoint) are described only where they are served.
"""
from __future__ import annotations

from datetime import date
from importlib import metadata

from flask import Blueprint, Flask, current_app

from . import demo, hooks

bp = Blueprint("cds_openapi", __name__)

JSON = ("application/json", "application/fhir+json")


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def content(schema: dict, types=("application/json",)) -> dict:
    return {t: {"schema": schema} for t in types}


def outcome(description: str) -> dict:
    return {"description": description + " (a FHIR OperationOutcome naming the problem)",
            "content": content(ref("OperationOutcome"), ("application/json", "application/fhir+json"))}


ERRORS = {
    "400": outcome("Malformed request"),
    "401": outcome("Missing or invalid JWT (missing: production only; a token sent must be valid)"),
    "404": outcome("No CDS service with this id"),
    "405": outcome("Method not allowed; the Allow header lists the methods"),
    "413": outcome("Request body, draft orders, prefetch entries, codings or the answer over a limit "
                   "(the setting is named)"),
    "415": outcome("Content-Type is not JSON"),
    "500": outcome("Internal error, logged"),
}

SCHEMAS: dict = {
    "OperationOutcome": {
        "type": "object", "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["severity", "code", "diagnostics"],
                "properties": {"severity": {"enum": ["fatal", "error", "warning", "information"]},
                               "code": {"type": "string"}, "diagnostics": {"type": "string", "minLength": 1},
                               "details": {"type": "object", "properties": {"text": {"type": "string"}}}}}}}},
    "Coding": {"type": "object", "properties": {"system": {"type": "string"}, "code": {"type": "string"},
                                                "display": {"type": "string"}}},
    "Service": {
        "type": "object", "required": ["hook", "id", "description"],
        "properties": {"hook": {"type": "string"}, "id": {"type": "string"}, "title": {"type": "string"},
                       "description": {"type": "string"},
                       "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
                       "usageRequirements": {"type": "string"},
                       "version": {"type": "string", "description": "the CDS Hooks version implemented"},
                       "extension": {"type": "object", "description": "knowledge-release: version and digest"}}},
    "Discovery": {"type": "object", "required": ["services"],
                  "properties": {"services": {"type": "array", "minItems": 1, "items": ref("Service")}}},
    "HookRequest": {
        "type": "object", "required": ["hook", "hookInstance", "context"],
        "description": "A CDS Hooks 2.0.1 request: order-select (context.selections and context.draftOrders) "
                       "or order-sign (context.draftOrders).",
        "properties": {
            "hook": {"enum": sorted({s.hook for s in hooks.SERVICES.values()})},
            "hookInstance": {"type": "string", "pattern": "\\S"},
            "fhirServer": {"type": "string", "format": "uri", "pattern": "^https?://[^/?#\\s]+",
                           "description": "http or https (https only in production)"},
            "fhirAuthorization": {"type": "object", "properties": {
                "access_token": {"type": "string"}, "token_type": {"type": "string"},
                "expires_in": {"type": "integer"}, "scope": {"type": "string"}, "subject": {"type": "string"}}},
            "context": {"type": "object", "required": ["patientId"], "properties": {
                "userId": {"type": "string"}, "patientId": {"type": "string", "pattern": "\\S"},
                "encounterId": {"type": "string"},
                "selections": {"type": "array", "items": {"type": "string"}},
                "draftOrders": {"type": "object", "description": "FHIR R4 Bundle of draft orders (ServiceRequests)",
                                "properties": {"resourceType": {"const": "Bundle"},
                                               "entry": {"type": "array", "items": {"type": "object"}}}}}},
            "prefetch": {"type": "object", "description": "Prefetch keys of the discovery (patient, conditions, "
                                                          "medications): FHIR resources or Bundles, or null",
                         "additionalProperties": {"type": ["object", "null"]}}}},
    "Action": {"type": "object", "required": ["type", "description"],
               "properties": {"type": {"enum": ["create", "update", "delete"]}, "description": {"type": "string"},
                              "resource": {"type": "object"}, "resourceId": {"type": "string"}}},
    "Suggestion": {"type": "object", "required": ["label"],
                   "properties": {"label": {"type": "string"}, "uuid": {"type": "string"},
                                  "isRecommended": {"type": "boolean"},
                                  "actions": {"type": "array", "minItems": 1, "items": ref("Action")}}},
    "Link": {"type": "object", "required": ["label", "url", "type"],
             "properties": {"label": {"type": "string"}, "url": {"type": "string"}, "type": {"enum": ["absolute", "smart"]},
                            "appContext": {"type": "string"}}},
    "Card": {
        "type": "object", "required": ["summary", "indicator", "source"],
        "properties": {
            "uuid": {"type": "string"}, "summary": {"type": "string", "minLength": 1, "maxLength": 139},
            "detail": {"type": "string"}, "indicator": {"enum": ["info", "warning", "critical"]},
            "source": {"type": "object", "required": ["label"], "properties": {
                "label": {"type": "string"}, "url": {"type": "string"}, "topic": ref("Coding")}},
            "suggestions": {"type": "array", "items": ref("Suggestion")},
            "selectionBehavior": {"enum": ["at-most-one", "any"]},
            "overrideReasons": {"type": "array", "items": ref("Coding")},
            "links": {"type": "array", "items": ref("Link")}}},
    "HookResponse": {
        "type": "object", "required": ["cards"],
        "properties": {"cards": {"type": "array", "items": ref("Card")},
                       "systemActions": {"type": "array", "items": ref("Action")},
                       "extension": {"type": "object", "description": "systemActions again, for the CDS Hooks "
                                                                      "Sandbox (Argonaut PAMA guide)",
                                     "properties": {"systemActions": {"type": "array", "items": ref("Action")}}}}},
    "Feedback": {
        "type": "object", "required": ["feedback"],
        "properties": {"feedback": {"type": "array", "items": {
            "type": "object", "required": ["card", "outcome", "outcomeTimestamp"],
            "properties": {"card": {"type": "string"}, "outcome": {"enum": ["accepted", "overridden"]},
                           "acceptedSuggestions": {"type": "array", "items": {
                               "type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}},
                           "overrideReason": {"type": "object", "properties": {
                               "reason": ref("Coding"), "userComment": {"type": "string"}}},
                           "outcomeTimestamp": {"type": "string", "format": "date-time"}}}}}},
    "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    "Readiness": {"type": "object", "required": ["status", "database"], "properties": {
        "status": {"const": "ready"}, "procedures": {"type": "integer"},
        "database": {"enum": ["up", "unreachable"]}, "journal_bytes": {"type": "integer"},
        "journal_budget_bytes": {"type": "integer"}}},
    "Explanation": {
        "type": "object", "required": ["service", "hook", "conclusion"],
        "description": "The decision step by step: orders recognised, patient, evidence, exclusions checked, "
                       "data not read, findings, cards and ratings, and the conclusion in a sentence.",
        "properties": {"service": {"type": "string"}, "hook": {"type": "string"}, "conclusion": {"type": "string"},
                       "orders": {"type": "array", "items": {"type": "object"}},
                       "exclusions": {"type": "array", "items": {"type": "object"}},
                       "cards": {"type": "array", "items": {"type": "object"}}}},
    "FhirResource": {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}}},
}



def hook_request(service: hooks.Service) -> dict:
    """The request schema of one service: its own hook."""
    return {"allOf": [ref("HookRequest"), {"properties": {"hook": {"const": service.hook}}}]}


def hook_example(service: hooks.Service, today: date) -> dict | None:
    """A real request: the in-scope demo girl with a CT chest (a warning with a suggestion); None where
    the demo patients are not installed (the production image)."""
    girl = next((p for p in demo.load() if p.id == "demo-girl-7"), None)
    if girl is None:
        return None
    body = demo.order_select(girl, {"system": "http://www.ama-assn.org/go/cpt", "code": "71260"}, today)
    if service.hook == "order-sign":
        body["hook"] = "order-sign"
        del body["context"]["selections"]
    return body


def hook_content(service: hooks.Service, today: date) -> dict:
    example = hook_example(service, today)
    examples = {"examples": {"ct-chest-girl": {
        "summary": "CT chest for a 7-year-old girl with B-cell ALL diagnosed 2 days ago", "value": example}}} \
        if example else {}
    return {t: {"schema": hook_request(service), **examples} for t in JSON}


def operation(summary: str, responses: dict, **extra) -> dict:
    return {"summary": summary, "responses": responses, **extra}


def document(production: bool, today: date) -> dict:
    secured = [{"cdsHooksJwt": []}] if production else [{}, {"cdsHooksJwt": []}]
    hook_errors = {**ERRORS, "403": outcome("fhirServer is not one this caller may name"),
                   "412": outcome("Required FHIR data (the Patient) could not be had")}
    html = {"text/html": {"schema": {"type": "string"}}}
    fhir_json = ("application/fhir+json",)
    knowledge_found = {"200": {"description": "A FHIR resource or searchset Bundle of the knowledge base",
                               "content": content(ref("FhirResource"), fhir_json)},
                       "404": {"description": "No such resource (an OperationOutcome)",
                               "content": content(ref("FhirResource"), fhir_json)}}
    paths = {
        "/cds-services": {"get": operation(
            "CDS Hooks discovery", {"200": {"description": "The services offered",
                                            "content": content(ref("Discovery"))}, "401": ERRORS["401"]},
            security=secured)},
        **{path: item for service in hooks.SERVICES.values() for path, item in {
            f"/cds-services/{service.id}": {"post": operation(
                f"{service.title} ({service.hook})",
                {"200": {"description": "Cards and PAMA ratings; no cards when nothing applies",
                         "content": content(ref("HookResponse"))}, **hook_errors},
                description=service.description, security=secured,
                requestBody={"required": True, "content": hook_content(service, today)})},
            f"/cds-services/{service.id}/feedback": {"post": operation(
                "CDS Hooks feedback on cards (accepted, overridden)",
                {"200": {"description": "Recorded for the cards issued to the caller (in the audit journal while the "
                                        "database is unavailable)",
                         "content": content({"type": "object", "maxProperties": 0})},
                 **ERRORS},
                security=secured,
                requestBody={"required": True, "content": content(ref("Feedback"), JSON)})},
        }.items()},
        "/health": {"get": operation("Liveness", {"200": {"description": "Up", "content": content(ref("Status"))}})},
        "/ready": {"get": operation("Readiness: the process answers hook calls, with or without its database", {
            "200": {"description": "Ready; whether the database answers, the audit journal's size and budget",
                    "content": content(ref("Readiness"))}})},
        "/metrics": {"get": operation("Prometheus metrics", {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        "/openapi.json": {"get": operation("This document", {
            "200": {"description": "OpenAPI 3.1", "content": content({"type": "object"})}})},
        "/guidance/": {"get": operation("Guidance pages: the index", {"200": {"description": "HTML", "content": html}})},
        "/guidance/hazard-log": {"get": operation("Guidance pages: the hazard log", {
            "200": {"description": "HTML", "content": html}, "404": {"description": "Not deployed", "content": html}})},
        "/guidance/variants/{variant_id}": {"get": operation("Guidance page of a scenario variant", {
            "200": {"description": "HTML", "content": html}, "404": {"description": "No such variant", "content": html}},
            parameters=[{"name": "variant_id", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/guidance/procedures/{procedure_id}": {"get": operation("Guidance page of a procedure", {
            "200": {"description": "HTML", "content": html}, "404": {"description": "No such procedure", "content": html}},
            parameters=[{"name": "procedure_id", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/fhir/metadata": {"get": operation("The knowledge as FHIR: CapabilityStatement", knowledge_found)},
        "/fhir/{kind}": {"get": operation("The knowledge as FHIR: search a resource type", knowledge_found,
            parameters=[{"name": "kind", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/fhir/{kind}/{id}": {"get": operation("The knowledge as FHIR: read a resource", knowledge_found,
            parameters=[{"name": "kind", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}])},
    }
    if not production:
        fhir = ("application/fhir+json",)
        found = {"200": {"description": "A FHIR resource or searchset Bundle", "content": content(ref("FhirResource"), fhir)}}
        patient = {"name": "patient", "in": "query", "required": True, "schema": {"type": "string", "pattern": "\\S"},
                   "description": "Patient id (or Patient/id)"}
        paths |= {
            **{f"/cds-services/{service.id}/explain": {"post": operation(
                "Development only: the decision for a hook request, step by step",
                {"200": {"description": "The explanation", "content": content(ref("Explanation"))}, **hook_errors},
                requestBody={"required": True, "content": content(hook_request(service), JSON)})}
               for service in hooks.SERVICES.values()},
            "/demo/fhir/metadata": {"get": operation("Development only: the demo FHIR server's CapabilityStatement", found)},
            "/demo/fhir/Patient": {"get": operation("Development only: the demo patients", found, parameters=[
                {"name": "_id", "in": "query", "schema": {"type": "string"}}])},
            "/demo/fhir/Patient/{id}": {"get": operation("Development only: read a demo Patient", {
                **found, "404": outcome("No such demo patient")},
                parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}])},
            **{f"/demo/fhir/{kind}": {"get": operation(f"Development only: search the demo {kind}s", {
                **found, "400": outcome("No patient parameter")}, parameters=[patient])}
               for kind in ("Condition", "MedicationRequest")},
        }
    try:
        version = metadata.version("cds-service")
    except metadata.PackageNotFoundError:
        version = "0"
    return {
        "openapi": "3.1.0",
        "info": {"title": "ACR imaging guidance for pediatric ALL staging (CDS Hooks 2.0.1)", "version": version,
                 "description": "A CDS Hooks service applying the ACR Appropriateness Criteria to imaging orders at "
                                "initial staging of children with newly diagnosed acute lymphoblastic leukemia."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"cdsHooksJwt": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "The CDS client's signed JWT (CDS Hooks 2.0.1 section 'Trusting CDS Clients')"}}},
    }


@bp.get("/openapi.json")
def openapi_json():
    runtime = current_app.extensions["cds"]
    return document(runtime.settings.production, runtime.handler.today())


def register(app: Flask) -> None:
    app.register_blueprint(bp)
