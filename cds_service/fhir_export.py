"""The knowledge base as FHIR R4 resources, following the HL7 CPG-on-FHIR patterns where they fit:
a ValueSet per code list, an ActivityDefinition per imaging study, a PlanDefinition (eca-rule) per
variant whose actions carry the rating, the suggestion and the conditions of scope, a CodeSystem
for the ACR categories, and a Library citing the sources. Read-only under /fhir/ (with a
CapabilityStatement) and as a Bundle (`cds-service export --out DIR`).

Built from the same Knowledge the decision reads, so the two cannot drift apart."""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any, Iterable

from flask import Blueprint, Flask, current_app, request

from . import hooks, page_urls
from .cards import PAMA_SYSTEM
from .knowledge import Code, Knowledge, Procedure, Variant
from .knowledge.model import PREFIX_SYSTEMS

FHIR_VERSION = "4.0.1"
PUBLISHER = "ACR imaging guidance for pediatric ALL staging (this CDS service)"
PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
ACTION_TYPE = "http://terminology.hl7.org/CodeSystem/action-type"
PRIORITY = {"info": "routine", "warning": "urgent", "critical": "stat"}  # card indicator <- action priority
LIBRARY_ID = "acr-leukemia-staging-sources"
CATEGORY_ID = "acr-category"
MEDIA = "application/fhir+json"


def rating_extension_url(base: str) -> str:
    return f"{base}/fhir/StructureDefinition/acr-rating"


class Exporter:
    """Resources with canonical URLs below `base` (CDS_CANONICAL_BASE), linking to the guidance pages
    below `pages` (the service's external base URL; default: `base`)."""

    def __init__(self, k: Knowledge, base: str, pages: str | None = None):
        self.k = k
        self.base = base.rstrip("/")
        self.pages = (pages or base).rstrip("/")

    def url(self, kind: str, rid: str) -> str:
        return f"{self.base}/fhir/{kind}/{rid}"

    def common(self, resource_type: str, rid: str, title: str, **extra: Any) -> dict:
        return {"resourceType": resource_type, "id": rid, "url": self.url(resource_type, rid),
                "version": self.k.release.label,  # the knowledge release, as the cards name it
                "name": "".join(part.capitalize() for part in rid.replace(".", "-").split("-")),
                "title": title, "status": "active", "experimental": False, "publisher": PUBLISHER, **extra}

    def coding(self, code: Code) -> dict:
        return {"system": self.k.system_uris[code.system], "code": code.code, "display": code.display}

    # -- resources -------------------------------------------------------------------------
    def all(self) -> list[dict]:
        k = self.k
        lists = [self.value_set(f"diagnoses-{c.id}", c.description, c.codes) for c in k.diagnosis_lists.values()]
        lists += [self.value_set(f"procedure-{p.id}", f"Order codes for {p.label}", p.codes)
                  for p in k.procedures.values()]
        return [self.category_system(), *lists, *(self.activity(p) for p in k.procedures.values()),
                *(self.plan(v) for v in k.variants), self.library()]

    def value_set(self, vid: str, title: str, codes: Iterable[Code]) -> dict:
        includes: dict[str, dict] = {}
        for code in codes:
            uri = self.k.system_uris[code.system]
            if code.code.endswith("*") and code.system in PREFIX_SYSTEMS:  # a category and its children
                includes[f"{uri}|{code.code}"] = {"system": uri, "filter": [
                    {"property": "concept", "op": "is-a", "value": code.code[:-1]}]}
            else:
                includes.setdefault(uri, {"system": uri, "concept": []})["concept"].append(
                    {"code": code.code, "display": code.display})
        return self.common("ValueSet", vid, title, compose={"include": list(includes.values())})

    def category_system(self) -> dict:
        k = self.k
        return {**self.common("CodeSystem", CATEGORY_ID, "ACR Appropriateness Criteria rating categories"),
                "url": k.acr_category_system, "content": "complete", "caseSensitive": True,
                "concept": [{"code": r.id, "display": r.label} for r in k.ratings.values()]}

    def activity(self, p: Procedure) -> dict:
        code = {"text": p.label}
        if p.order_code:
            code["coding"] = [self.coding(c) for c in p.order_code.values()]
        resource = self.common("ActivityDefinition", p.id, p.label, kind="ServiceRequest", intent="proposal",
                               code=code, relatedArtifact=[self.page(p.label, page_urls.procedure(p.id))])
        if p.rationale:
            resource["description"] = p.rationale
        return resource

    def page(self, label: str, path: str) -> dict:
        return {"type": "documentation", "display": f"Guidance: {label}", "url": self.pages + path}

    def rating(self, rating) -> dict:
        return {"url": rating_extension_url(self.base), "valueCodeableConcept": {"coding": [
            {"system": PAMA_SYSTEM, "code": rating.pama},
            {"system": self.k.acr_category_system, "code": rating.id, "display": rating.label}]}}

    def plan(self, v: Variant) -> dict:
        k = self.k
        policies = k.policies
        leukemia = next(c.id for c in k.diagnosis_lists.values() if c.kind == "all")
        scope = [self.condition(f"Child: {policies.max_age_years} years or younger on the day of the order",
                                f"%patient.birthDate > today() - {policies.max_age_years + 1} years"),
                 self.condition(f"Confirmed, active ALL diagnosed within {policies.new_within_days} days "
                                f"(ValueSet diagnoses-{leukemia}), before systemic therapy",
                                f"%conditions.where(code.memberOf('{self.url('ValueSet', f'diagnoses-{leukemia}')}') "
                                "and clinicalStatus.coding.code contains 'active' and verificationStatus.coding.code "
                                f"contains 'confirmed' and onset.ofType(dateTime) >= today() - "
                                f"{policies.new_within_days} days).exists()")]
        if v.sex != "any":
            scope.append(self.condition(f"Sex: {v.sex}", f"%patient.gender = '{v.sex}'"))
        scope += [self.condition(f"Does not apply with a recorded {c.description[0].lower() + c.description[1:]} "
                                 f"(ValueSet diagnoses-{c.id})", self.none_recorded(c))
                  for c in k.diagnosis_lists.values() if c.kind != "all"]
        actions = []
        for p in k.procedures.values():
            vr = next((vr for vr in p.ratings if vr.variant.id == v.id), None)
            if vr is None:
                continue
            action = {
                "id": p.id, "title": p.summary, "description": p.why, "textEquivalent": p.rationale,
                "priority": PRIORITY[vr.rating.indicator], "extension": [self.rating(vr.rating)],
                "trigger": self.triggers(), "condition": [self.order_condition(p), *scope],
                "definitionCanonical": self.url("ActivityDefinition", p.id),
                "documentation": [self.page(p.label, page_urls.procedure(p.id)),
                                  {"type": "citation", "display": k.sources[vr.source],
                                   "resource": f"{self.url('Library', LIBRARY_ID)}"}],
            }
            alternative = k.procedures.get(p.alternative) if p.alternative else None
            alt_rating = next((r for r in alternative.ratings if r.variant.sex in ("any", v.sex)), None) \
                if alternative else None
            if alternative and alt_rating:
                action["selectionBehavior"] = "at-most-one"
                action["action"] = [{
                    "id": f"{p.id}-instead", "title": f"Order {alternative.label.lower()} instead",
                    "description": alternative.why, "type": {"coding": [{"system": ACTION_TYPE, "code": "update"}]},
                    "extension": [self.rating(alt_rating.rating)],
                    "definitionCanonical": self.url("ActivityDefinition", alternative.id)}]
            actions.append(action)
        actions += self.statement_actions(v, scope)
        return self.common(
            "PlanDefinition", v.id, v.label, description=f"{k.topic.label}, as reported by source {v.source}.",
            **self.usage(v),
            type={"coding": [{"system": PLAN_TYPE, "code": "eca-rule", "display": "ECA Rule"}]},
            library=[self.url("Library", LIBRARY_ID)],
            relatedArtifact=[self.page(v.label, page_urls.variant(v.id)),
                             {"type": "documentation", "display": k.topic.label, "url": k.topic.url}],
            action=actions)

    @staticmethod
    def usage(v: Variant) -> dict:
        """Who the variant includes and excludes, in the sources' words (no FHIRPath can say it)."""
        text = " ".join(part for part in (f"Includes: {'; '.join(v.inclusion)}." if v.inclusion else "",
                                          f"Does not apply to: {'; '.join(v.exclusion)}." if v.exclusion else "")
                        if part)
        return {"usage": text} if text else {}

    def order_condition(self, p: Procedure) -> dict:
        codes = self.url("ValueSet", f"procedure-{p.id}")
        return self.condition(f"A selected order for {p.label} (an order code in ValueSet procedure-{p.id})",
                              f"%context.code.memberOf('{codes}')")

    def none_recorded(self, codes) -> str:
        """FHIRPath: no record coded in the list (medication orders for therapy, else conditions)."""
        vs = self.url("ValueSet", f"diagnoses-{codes.id}")
        if codes.kind == "therapy":
            return f"%medications.where(medication.ofType(CodeableConcept).memberOf('{vs}')).empty()"
        return f"%conditions.where(code.memberOf('{vs}')).empty()"

    def statement_actions(self, v: Variant, scope: list[dict]) -> list[dict]:
        """What the sources say of a study without rating it, for the patients of this variant who get it
        (an info card marked Not an ACR rating; PAMA no-criteria-apply)."""
        actions = []
        for p in self.k.procedures.values():
            if any(vr.variant.id == v.id for vr in p.ratings):
                continue
            for s in p.statements:
                if v.sex != "any" and s.sex not in ("any", v.sex):
                    continue
                sex = [self.condition(f"Sex: {s.sex}", f"%patient.gender = '{s.sex}'")] \
                    if s.sex != "any" and s.sex != v.sex else []
                actions.append({
                    "id": f"{p.id}-statement-{s.sex}", "title": s.summary, "description": s.detail.replace("**", ""),
                    "priority": PRIORITY["info"], "code": [{"text": "Not an ACR rating"}],
                    "trigger": self.triggers(), "condition": [self.order_condition(p), *sex, *scope],
                    "definitionCanonical": self.url("ActivityDefinition", p.id),
                    "documentation": [self.page(p.label, page_urls.procedure(p.id))]})
        return actions

    @staticmethod
    def triggers() -> list[dict]:
        return [{"type": "named-event", "name": hook} for hook in sorted({s.hook for s in hooks.SERVICES.values()})]

    @staticmethod
    def condition(description: str, expression: str) -> dict:
        """An applicability condition in FHIRPath (R4's Expression.language allows only text/cql,
        text/fhirpath and application/x-fhir-query); the description says it in words."""
        return {"kind": "applicability",
                "expression": {"description": description, "language": "text/fhirpath", "expression": expression}}

    def library(self) -> dict:
        k = self.k
        sources = [{"type": "citation", "label": s.id, "display": s.title, "citation": s.publisher}
                   for s in k.source_details.values()]
        return self.common(
            "Library", LIBRARY_ID, f"Sources: {k.topic.label}",
            type={"coding": [{"system": LIBRARY_TYPE, "code": "asset-collection"}]},
            description=f"{k.texts['source_note']} {k.texts['disclaimer']}",
            relatedArtifact=[{"type": "documentation", "display": k.topic.label, "url": k.topic.url}, *sources])

    def capability(self) -> dict:
        kinds = sorted({r["resourceType"] for r in self.all()})
        return {"resourceType": "CapabilityStatement", "version": self.k.release.label, "status": "active",
                "date": date.today().isoformat(),
                "publisher": PUBLISHER, "kind": "instance", "fhirVersion": FHIR_VERSION, "format": ["json"],
                "implementation": {"description": "The ACR staging knowledge of this CDS service, read-only",
                                   "url": f"{self.base}/fhir"},
                "rest": [{"mode": "server", "resource": [
                    {"type": kind, "interaction": [{"code": "read"}, {"code": "search-type"}],
                     "searchParam": [{"name": name, "type": "token" if name in ("_id", "status") else
                                      "uri" if name == "url" else "string"} for name in SEARCH_PARAMETERS]}
                    for kind in kinds]}]}

    def bundle(self, kind: str = "collection") -> dict:
        entries = [{"fullUrl": self.url(r["resourceType"], r["id"]), "resource": r} for r in self.all()]
        body = {"resourceType": "Bundle", "type": kind, "entry": entries}
        if kind == "searchset":
            body["total"] = len(entries)
        return body


def write_bundle(k: Knowledge, out: Path | str, base: str, pages: str | None = None) -> Path:
    """`cds-service export --out DIR`: the whole knowledge as one Bundle, DIR/acr-leukemia-staging-bundle.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "acr-leukemia-staging-bundle.json"
    path.write_text(json.dumps(Exporter(k, base, pages).bundle(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# -- read-only FHIR endpoint -----------------------------------------------------------------
bp = Blueprint("fhir", __name__, url_prefix="/fhir")


def exporter() -> Exporter:
    rt = current_app.extensions["cds"]
    pages = rt.settings.public_base_url or request.host_url
    return Exporter(rt.knowledge, rt.settings.canonical_base or pages, pages)


def fhir_response(body: dict, status: int = 200):
    response = current_app.response_class(json.dumps(body, ensure_ascii=False), status=status, mimetype=MEDIA)
    return response


def not_found(message: str):
    return fhir_response({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": message}]}, 404)


@bp.get("/metadata")
def metadata():
    return fhir_response(exporter().capability())


SEARCH_PARAMETERS = {"_id": "id", "url": "url", "name": "name", "status": "status"}


@bp.get("/<kind>")
def search(kind: str):
    found = exporter()
    matches = [r for r in found.all() if r["resourceType"] == kind]
    if not matches:
        return not_found(f"no resource type '{kind}' on this server (see /fhir/metadata)")
    for parameter, value in request.args.items():
        if parameter in SEARCH_PARAMETERS:  # others are ignored, as FHIR search allows
            matches = [r for r in matches if r.get(SEARCH_PARAMETERS[parameter]) == value]
    entries = [{"fullUrl": found.url(kind, r["id"]), "resource": r, "search": {"mode": "match"}} for r in matches]
    body = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    return fhir_response({**body, "entry": entries} if entries else body)  # FHIR JSON has no empty arrays


@bp.get("/<kind>/<rid>")
def read(kind: str, rid: str):
    found = next((r for r in exporter().all() if r["resourceType"] == kind and r["id"] == rid), None)
    return fhir_response(found) if found else not_found(f"{kind}/{rid} is not on this server")


def register(app: Flask) -> None:
    app.register_blueprint(bp)


def add_export_command(commands) -> None:
    """`cds-service export --out DIR [--base-url URL]` (cli.py's argparse subcommands)."""
    parser = commands.add_parser("export", help="write the knowledge base as a FHIR R4 Bundle",
                                 description="Write the knowledge base (ValueSets, ActivityDefinitions, "
                                             "PlanDefinitions, Library) as one FHIR Bundle in DIR.")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write the Bundle to")
    parser.add_argument("--base-url", metavar="URL",
                        help="base of the canonical URLs (default: $CDS_CANONICAL_BASE, else $CDS_PUBLIC_BASE_URL)")
    parser.set_defaults(run=run_export)


def run_export(args) -> int:
    from . import config, knowledge
    settings = config.from_env()
    k = knowledge.load(settings.knowledge_dir or None)
    base = args.base_url or settings.canonical_base or settings.public_base_url
    if not base:
        print("no base for the canonical URLs: set CDS_CANONICAL_BASE (or pass --base-url), e.g. "
              "https://cds.hospital.example.org", file=sys.stderr)
        return 2
    print(write_bundle(k, args.out, base, settings.public_base_url or None))
    return 0
