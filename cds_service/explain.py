""""Why no card?": one hook call's decision, step by step, from the pipeline's own objects.

`cds-service explain REQUEST.json` (plain text, or --json) and, in development only,
`POST /cds-services/{id}/explain` with the hook request as body. Nothing here decides: it reports
what the pipeline recognised, read, checked and answered.
"""
from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask

from . import hooks
from .api import check_fhir_server, find_service, read_json, runtime
from .decide import Decision
from .facts import Evidence
from .fhir_data import DataUnavailable
from .hooks import HookError
from .pipeline import Evaluation, HookHandler

bp = Blueprint("cds_explain", __name__)


def service_for(body: Any) -> hooks.Service:
    """The service whose hook the request names."""
    hook = body.get("hook") if isinstance(body, dict) else None
    for service in hooks.SERVICES.values():
        if service.hook == hook:
            return service
    raise HookError(400, f"'hook' must be one of {', '.join(s.hook for s in hooks.SERVICES.values())}")


def evidence(e: Evidence, knowledge) -> dict:
    return {"kind": e.kind, "display": e.display,
            "system": knowledge.system_names.get(e.system, e.system) if e.system else None,
            "code": e.code, "source": e.source, "clinical_status": e.clinical_status,
            "verification_status": e.verification_status, "date": e.date.isoformat() if e.date else None,
            "exact": e.exact, "from_text": e.from_text}


def conclusion(evaluation: Evaluation) -> str:
    """The cause, in one sentence, read off the decision."""
    decision: Decision | None = evaluation.decision
    cards = evaluation.outcome.rendered.body.get("cards", [])
    if evaluation.suppressed:
        s = evaluation.suppressed[0]
        return (f"Warning not shown again: it was overridden at {s.overridden_at.isoformat(timespec='seconds')} for "
                f"this patient and order ({s.rule}), and is shown again after {s.until.isoformat(timespec='seconds')}; "
                "the PAMA rating is still sent.")
    if decision is None:
        return "No card and no rating: no selected order is an imaging study the knowledge or the site code map knows."
    scope = decision.scope
    if scope.withheld:
        return "Rating withheld: the child is in scope on what was read, but part of the record could not be " \
               "checked: " + "; ".join(g.detail for g in scope.withheld) + "."
    if not scope.applies:
        why = "; ".join(r.summary for r in scope.reasons) or "no active, confirmed, exactly coded ALL diagnosis"
        if not cards:
            shown = "no leukemia is coded on record" if not scope.relevant else \
                "the policies give no card for this reason"
            return f"No card: the staging guidance does not apply ({why}); {shown}."
        return f"Information card only: the staging guidance does not apply ({why})."
    unrated = [o for o in decision.orders if o.staging is False]
    if not decision.findings:
        if unrated:
            return "No card: the child is in scope, but the order's stated reason is not the leukemia's staging."
        return "No card: the child is in scope, but the criteria give no rating or statement for the " \
               "selected studies for this patient."
    ratings = ", ".join(f"{f.procedure.label}: {f.rating.rating.label if f.rating else 'not rated'}"
                        for f in decision.findings)
    return f"In scope: {ratings}."


def explanation(evaluation: Evaluation, handler: HookHandler, service: hooks.Service) -> dict:
    knowledge = handler.knowledge
    body = evaluation.outcome.rendered.body
    result: dict[str, Any] = {"service": service.id, "hook": service.hook}
    result["orders"] = []
    for r in evaluation.recognised:
        entry: dict[str, Any] = {"id": r.order_id, "recognised": not r.note,
                                 "procedure": r.procedure.id if r.procedure else None}
        if r.procedure:
            name = knowledge.system_names.get(r.system) or f"site code {r.system}"
            entry["matched"] = f"{name} {r.code}"
        if r.note:
            entry["note"] = r.note
        indication = evaluation.indications.get(r.order_id) if not r.note else None
        if indication:
            entry["stated_reasons"] = list(indication.stated)
            entry["for_staging"] = indication.staging
        result["orders"].append(entry)
    facts, decision = evaluation.facts, evaluation.decision
    if facts is not None and decision is not None:
        scope = decision.scope
        result["patient"] = {"age": scope.age, "birth_date": facts.birth_date.isoformat() if facts.birth_date else None,
                             "sex": scope.sex, "on": scope.today.isoformat(),
                             "medication_orders_read": facts.medications_read}
        reasons = [e for i in evaluation.indications.values() for e in i.evidence]
        result["evidence"] = [{**evidence(e, knowledge), "relied_on": e in scope.diagnoses}
                              for e in (*facts.evidence, *reasons)]
        result["diagnosis_date"] = scope.diagnosis_date.isoformat() if scope.diagnosis_date else None
        found = {r.reason.id: r for r in scope.reasons}
        result["exclusions"] = [{"id": rid, "found": rid in found,
                                 **({"summary": found[rid].summary} if rid in found else {})}
                                for rid in knowledge.policies.out_of_scope]
        result["not_read"] = [{"data": g.data, "kind": g.kind, "detail": g.detail} for g in facts.gaps]
        result["scope"] = {"applies": scope.applies, "relevant": scope.relevant,
                           "withheld": [g.detail for g in scope.withheld]}
        result["findings"] = [{"order": f.order_id, "procedure": f.procedure.id, "pama": f.pama,
                               "rating": f.rating.rating.label if f.rating else None,
                               "statement": f.statement.summary if f.statement else None,
                               "alternative": f.alternative.id if f.alternative else None}
                              for f in decision.findings]
    result["suppressed"] = [{"order": x.order_id, "rule": x.rule, "overridden_at": x.overridden_at.isoformat(),
                             "shown_again_after": x.until.isoformat()} for x in evaluation.suppressed]
    rules = {c.uuid: c.rule for c in evaluation.outcome.rendered.issued}
    result["withheld"] = [{"rule": rules.get(uuid), "why": why, **({"reason": reason} if reason else {})}
                          for uuid, why, reason in evaluation.withheld]
    result["cards"] = [{"indicator": c["indicator"], "summary": c["summary"], "rule": c["source"]["topic"]["code"],
                        "suggestions": [s["label"] for s in c.get("suggestions", ())]}
                       for c in body.get("cards", [])]
    result["ratings"] = {a["resource"].get("id"): next(
        (cd["code"] for e in a["resource"].get("extension", []) if e.get("url") == "http://fhir.org/argonaut/Extension/pama-rating"
         for cd in e["valueCodeableConcept"]["coding"]), None) for a in body.get("systemActions", [])}
    result["conclusion"] = conclusion(evaluation)
    return result


def explain(body: Any, handler: HookHandler, require_https: bool = False,
            check_server=lambda request: None) -> dict:
    """The explanation of a hook request body. HookError (400, 403) for a request the service would refuse
    (check_server refuses a fhirServer the caller may not name); a 412 is reported in the explanation."""
    service = service_for(body)
    request = hooks.parse(body, service, require_https=require_https)
    check_server(request)
    try:
        evaluation = handler.evaluate(request, record=False)
    except DataUnavailable as exc:
        return {"service": service.id, "hook": service.hook, "status": 412,
                "conclusion": f"No answer (HTTP 412): required FHIR data could not be obtained: {exc}"}
    return explanation(evaluation, handler, service)


def as_text(x: dict) -> str:
    """The explanation for people."""
    lines = [f"Service: {x['service']} ({x['hook']})", ""]
    if "orders" in x:
        lines.append("1. Orders")
        for o in x["orders"]:
            head = f"   - {o['id'] or '(no id)'}: "
            if o["recognised"]:
                head += f"recognised as {o['procedure']} by {o['matched']}"
            elif o.get("procedure"):
                head += f"{o['procedure']} by {o['matched']}, not rated: {o['note']}"
            else:
                head += f"not recognised: {o['note']}"
            lines.append(head)
            if "stated_reasons" in o:
                stated = ", ".join(o["stated_reasons"]) or "none"
                staging = {True: "yes", False: "no", None: "no reason stated"}[o["for_staging"]]
                lines.append(f"     stated reasons: {stated}; for staging: {staging}")
    if "patient" in x:
        p = x["patient"]
        age = f"{p['age']} years on {p['on']} (born {p['birth_date']})" if p["age"] is not None else \
            f"unknown on {p['on']} (birth date {p['birth_date'] or 'not usable'})"
        meds = "no medication data" if p["medication_orders_read"] is None else \
            f"{p['medication_orders_read']} medication order(s) read"
        lines += ["", "2. Patient", f"   age: {age}", f"   sex: {p['sex'] or 'not recorded'}", f"   {meds}"]
        lines += ["", "3. Diagnoses, symptoms and therapy read"]
        for e in x["evidence"] or [{"none": True}]:
            if e.get("none"):
                lines.append("   (none that the knowledge recognises)")
                continue
            coded = f"{e['system']} {e['code']}" if e["code"] else "in text"
            status = ", ".join(s for s in (e["verification_status"], e["clinical_status"]) if s) or "no status"
            extra = [f"dated {e['date']}" if e["date"] else "no usable date" if e["kind"].startswith("all") and e["source"].startswith("Condition/") else "",
                     "not exact (can only take the child out)" if not e["exact"] else "",
                     "relied on" if e["relied_on"] else ""]
            lines.append(f"   - {e['kind']}: {e['display']} ({coded}) from {e['source']}; {status}"
                         + "".join(f"; {t}" for t in extra if t))
        lines += ["", "4. Exclusions checked"]
        lines += [f"   [{'x' if r['found'] else ' '}] {r['id']}" + (f": {r['summary']}" if r["found"] else "")
                  for r in x["exclusions"]]
        lines += ["", "5. Data that could not be read"]
        lines += [f"   - {g['data']} ({g['kind']}): {g['detail']}" for g in x["not_read"]] or ["   (none)"]
        s = x["scope"]
        lines += ["", "6. Decision", f"   in scope: {'yes' if s['applies'] else 'no'}"
                  + (" (rating withheld)" if s["withheld"] else "")]
        for f in x["findings"]:
            said = f["rating"] or f["statement"] or "no rating"
            lines.append(f"   - {f['order']} {f['procedure']}: {said} (PAMA {f['pama']})"
                         + (f"; suggest {f['alternative']}" if f["alternative"] else ""))
    if "cards" in x:
        lines += ["", "7. Answer"]
        lines += [f"   card [{c['indicator']}] {c['summary']}" + "".join(f"\n     suggestion: {s}" for s in c["suggestions"])
                  for c in x["cards"]] or ["   no cards"]
        lines += [f"   PAMA rating {oid}: {r}" for oid, r in x["ratings"].items()]
        lines += [f"   kept from the EHR: {w['rule']} ("
                  + ("silent mode, CDS_SILENT" if w["why"] == "silent" else f"rule off: {w['reason']}") + ")"
                  for w in x.get("withheld", [])]
        lines += [f"   not shown again: the warning {s['rule']} for {s['order']} (overridden at {s['overridden_at']}; "
                  f"shown again after {s['shown_again_after']})" for s in x.get("suppressed", [])]
    lines += ["", f"Why: {x['conclusion']}"]
    return "\n".join(lines)


@bp.post("/cds-services/<service_id>/explain")
def explain_route(service_id: str):
    """Development only: the explanation of a hook request (JSON)."""
    service = find_service(service_id)
    body = read_json()
    if isinstance(body, dict) and body.get("hook") != service.hook:
        raise HookError(400, f"hook '{body.get('hook')}' does not match service '{service.id}'")
    return explain(body, runtime().handler, check_server=check_fhir_server)


def register(app: Flask) -> None:
    if not app.extensions["cds"].settings.production:
        app.register_blueprint(bp)


def run(path: str, as_json: bool) -> int:
    """`cds-service explain`: 0 when explained, 2 when the request is refused (400)."""
    from . import build_handler, config, governance
    settings = config.from_env()
    handler = build_handler(settings)
    handler.governance = governance.Governance(governance.switches_from_settings(settings, handler.knowledge))
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}: {exc}")
        return 2
    try:
        result = explain(body, handler)
    except HookError as exc:
        result = {"status": exc.status, "conclusion": f"Refused (HTTP {exc.status}): {exc.message}"}
        print(json.dumps(result, indent=2) if as_json else f"Why: {result['conclusion']}")
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False) if as_json else as_text(result))
    return 0
