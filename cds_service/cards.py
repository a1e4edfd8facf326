"""Rendering: a Decision -> CDS Hooks cards, suggestions and PAMA systemActions (pure).

All clinical wording comes from the knowledge base; this module only lays it out.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .decide import Decision, Finding, Scope
from .facts import Evidence, PatientFacts
from .knowledge import Knowledge, Procedure

PAMA_PREFIX = "http://fhir.org/argonaut/Extension/pama-rating"
PAMA_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
SUMMARY_MAX = 139
RESULT_LABELS = {"normal": "Normal", "negative": "Negative", "positive": "Positive", "indeterminate": "Indeterminate"}


@dataclass(frozen=True)
class IssuedCard:
    """What was shown, for the audit: identifiers and the rule behind the card, no clinical text."""
    uuid: str
    order_id: str | None
    rule: str
    indicator: str
    rating: str | None
    suggestion_uuids: tuple[str, ...]


@dataclass(frozen=True)
class Rendered:
    body: dict
    issued: tuple[IssuedCard, ...]


def pama_extensions(existing: Any, rating: str, qcdsm: str, consult_id: str) -> list:
    """The order's own extensions, less any earlier PAMA rating, plus the Argonaut rating extensions."""
    kept = [e for e in existing if not (isinstance(e, dict) and str(e.get("url", "")).startswith(PAMA_PREFIX))] \
        if isinstance(existing, list) else []
    return kept + [
        {"url": PAMA_PREFIX, "valueCodeableConcept": {"coding": [{"system": PAMA_SYSTEM, "code": rating}]}},
        {"url": f"{PAMA_PREFIX}-qcdsm-consulted", "valueString": qcdsm},
        {"url": f"{PAMA_PREFIX}-consult-id", "valueUri": consult_id},
    ]


class Renderer:
    def __init__(self, knowledge: Knowledge, new_id: Callable[[], str] = lambda: str(uuid.uuid4())):
        self.k = knowledge
        self.new_id = new_id
        topic = knowledge.topic
        self.link = {"label": topic.label, "url": topic.url, "type": "absolute"}
        self.override_reasons = [{"system": c.system, "code": c.code, "display": c.display}
                                 for c in knowledge.policies.override_reasons]

    def source(self, rule: str) -> dict:
        topic = self.k.topic
        return {"label": topic.label, "url": topic.url,
                "topic": {"system": topic.topic_system, "code": rule, "display": topic.title}}

    # -- the response ------------------------------------------------------------------
    def render(self, decision: Decision, facts: PatientFacts, orders: Mapping[str, dict],
               matched_systems: Mapping[str, str], drafted: set[str], consult_id: str) -> Rendered:
        cards, issued, actions = [], [], []
        suggested: set[str] = set()  # one suggestion per alternative study, even for two warnings
        scope = decision.scope
        relied_on = self.relied_on(scope, facts)
        findings = {f.order_id: f for f in decision.findings}
        for finding in decision.findings:
            raw = orders[finding.order_id]
            card = None
            if finding.rating:
                card = self.rated_card(finding, raw, matched_systems.get(finding.order_id), drafted | suggested,
                                       relied_on, consult_id)
                if finding.alternative:
                    suggested.add(finding.alternative.id)
            elif finding.statement:
                card = self.statement_card(finding, relied_on)
            if card:
                cards.append(card)
                issued.append(IssuedCard(
                    card["uuid"], finding.order_id, card["source"]["topic"]["code"], card["indicator"],
                    finding.pama, tuple(s["uuid"] for s in card.get("suggestions", ()))))
        # Every recognised order gets a rating, so that an EHR replaces one an earlier call gave:
        # an order this call does not rate gets no-criteria-apply.
        for order in decision.orders:
            finding = findings.get(order.id)
            pama = finding.pama if finding else "no-criteria-apply"
            label = finding.rating.rating.label if finding and finding.rating else "not rated by the criteria"
            raw = orders[order.id]
            actions.append({
                "type": "update",
                "description": f"PAMA appropriateness rating for {order.procedure.label}: {pama} ({label}).",
                "resource": {**raw, "extension": pama_extensions(
                    raw.get("extension"), pama, self.k.policies.pama_qcdsm, consult_id)},
            })
        if scope.withheld and any(o.staging is not False for o in decision.orders):
            card = self.withheld_card(decision, relied_on)
            cards.append(card)
            issued.append(IssuedCard(card["uuid"], None, card["source"]["topic"]["code"], "info", None, ()))
        elif not scope.applies and scope.relevant and decision.orders and self.k.policies.explain_out_of_scope \
                and scope.reasons and all(r.reason.explain for r in scope.reasons):
            card = self.out_of_scope_card(decision, relied_on)
            cards.append(card)
            issued.append(IssuedCard(card["uuid"], None, card["source"]["topic"]["code"], "info", None, ()))
        body: dict[str, Any] = {"cards": cards}
        if actions:
            body["systemActions"] = actions
            body["extension"] = {"systemActions": actions}  # the CDS Hooks Sandbox reads only this
        return Rendered(body, tuple(issued))

    # -- cards -------------------------------------------------------------------------
    def card(self, summary: str, indicator: str, detail: str, rule: str, **extra: Any) -> dict:
        return {"uuid": self.new_id(), "summary": summary, "indicator": indicator, "detail": detail,
                "source": self.source(rule), "links": [self.link], **extra}

    def rated_card(self, finding: Finding, raw: dict, system: str | None, drafted: set[str],
                   relied_on: str, consult_id: str) -> dict:
        procedure, vr = finding.procedure, finding.rating
        k = self.k
        parts = [f"**ACR rating: {vr.rating.label}** for {k.topic.scope_label} "
                 f"(variant: {vr.variant.label}; source {vr.source})."]
        radiation = f"**Radiation (pediatric relative radiation level):** {procedure.rrl}"
        if finding.alternative and finding.alternative.rrl:
            radiation += f", against {finding.alternative.rrl} for {finding.alternative.label.lower()}"
        parts += [radiation + ".", f"**Why:** {procedure.rationale}"]
        extra: dict[str, Any] = {}
        alternative = finding.alternative
        if alternative:
            alt_rating = finding.alternative_rating.rating.label
            if alternative.id in drafted:
                parts.append(f"**Instead:** {alternative.label} ({alt_rating}) is already among the draft orders "
                             "or suggested on another card.")
            else:
                parts.append(f"**Instead:** {alternative.label} ({alt_rating}). {alternative.rationale}")
                extra["suggestions"] = [self.suggestion(finding, raw, system, consult_id)]
                extra["selectionBehavior"] = "at-most-one"
        if vr.rating.indicator != "info":
            extra["overrideReasons"] = self.override_reasons
        parts += self.results_and_pitfalls(procedure)
        parts += [relied_on, f"**Scope:** {k.texts['scope_caveat']}", self.footer()]
        rule = f"{vr.variant.id}/{procedure.id}"
        return self.card(procedure.summary, vr.rating.indicator, "\n\n".join(parts), rule, **extra)

    def statement_card(self, finding: Finding, relied_on: str) -> dict:
        statement = finding.statement
        parts = [statement.detail, relied_on, self.footer()]
        return self.card(statement.summary, "info", "\n\n".join(parts), f"statement/{finding.procedure.id}")

    def out_of_scope_card(self, decision: Decision, relied_on: str) -> dict:
        scope = decision.scope
        headline = scope.reasons[0]
        template = self.k.policies.out_of_scope_summary
        summary = template.format(reason=headline.summary)
        if len(summary) > SUMMARY_MAX:
            room = SUMMARY_MAX - len(template.format(reason="")) - 1
            summary = template.format(reason=headline.summary[:room].rstrip() + "…")
        studies = ", ".join(sorted({o.procedure.label for o in decision.orders}))
        parts = ["**Why the ACR staging guidance does not apply:**",
                 "\n".join(f"- **{r.summary.capitalize()}.** {r.detail}" for r in scope.reasons),
                 f"No appropriateness rating is given for: {studies}.",
                 relied_on, self.footer()]
        return self.card(summary, "info", "\n\n".join(parts), f"out-of-scope/{headline.reason.id}")

    def withheld_card(self, decision: Decision, relied_on: str) -> dict:
        policies = self.k.policies
        studies = ", ".join(sorted({o.procedure.label for o in decision.orders}))
        parts = [policies.withheld_detail,
                 "**Could not be checked:**\n" + "\n".join(f"- {g.detail}" for g in decision.scope.withheld),
                 f"Studies not rated: {studies}.", relied_on, self.footer()]
        return self.card(policies.withheld_summary, "info", "\n\n".join(parts), "withheld/incomplete-record")

    def suggestion(self, finding: Finding, raw: dict, system: str | None, consult_id: str) -> dict:
        alternative = finding.alternative
        code = alternative.order_code.get(system) or alternative.order_code.get("cpt") \
            or next(iter(alternative.order_code.values()))
        resource = {**{k: v for k, v in raw.items() if k != "text"},  # the old narrative names the old study
                    "code": {"coding": [{"system": self.k.system_uris[code.system], "code": code.code,
                                         "display": code.display}], "text": alternative.label},
                    "extension": pama_extensions(raw.get("extension"), finding.alternative_rating.rating.pama,
                                                 self.k.policies.pama_qcdsm, consult_id)}
        name = self.k.system_names[code.system]
        return {
            "label": f"Order {alternative.label.lower()} instead ({code.display})",
            "uuid": self.new_id(),
            "isRecommended": True,
            "actions": [{"type": "update",
                         "description": f"Change the selected {finding.procedure.label} order to "
                                        f"{code.display} ({name} {code.code}).",
                         "resource": resource}],
        }

    # -- shared sections ---------------------------------------------------------------
    def results_and_pitfalls(self, procedure: Procedure) -> list[str]:
        parts = []
        if procedure.results:
            parts.append("**What to do with the result:**\n" + "\n".join(
                f"- **{RESULT_LABELS[kind]}:** {text}" for kind, text in procedure.results.items()))
        if procedure.pitfalls:
            parts.append("**Pitfalls:**\n" + "\n".join(f"- {p}" for p in procedure.pitfalls))
        return parts

    def cite(self, d: Evidence) -> str:
        status = ", ".join(f"{s} status" if s == "unknown" else s for s in (d.verification_status, d.clinical_status) if s)
        if d.from_text:
            text = f'"{d.display}" (in text), {d.source}'
        else:
            text = f"{d.display} ({self.k.system_names.get(d.system, d.system)} {d.code}), {d.source}"
        if status:
            text += f", {status}"
        if d.date:
            text += f", dated {d.date.isoformat()}"
        return text

    def relied_on(self, scope: Scope, facts: PatientFacts) -> str:
        lines = []
        if scope.age is None:
            lines.append("Age: unknown (no valid birth date recorded)")
        else:
            lines.append(f"Age: {scope.age} years on {scope.today.isoformat()} "
                         f"(birth date {facts.birth_date.isoformat()})")
        lines.append(f"Sex: {scope.sex or 'not recorded'}")
        if scope.diagnoses:
            lines += [f"Diagnosis: {self.cite(d)}" for d in scope.diagnoses]
        else:
            lines.append("Diagnosis: no active ALL Condition recorded")
        others = [d for d in facts.evidence if d.kind not in ("symptom", "therapy") and d not in scope.diagnoses]
        lines += [f"Also recorded: {self.cite(d)}" for d in others]
        if scope.symptoms:
            lines += [f"Symptom: {self.cite(d)}" for d in scope.symptoms]
        else:
            lines.append("Symptoms: none recorded as active Conditions or as the order's reason")
        if scope.therapy:
            lines += [f"Therapy: {self.cite(d)}" for d in scope.therapy]
        elif facts.medications_read is None:
            lines.append(f"Therapy: not checked (no medication data); a diagnosis within "
                         f"{self.k.policies.new_within_days} days stands in for 'before therapy'")
        else:
            lines.append(f"Therapy: none of the {facts.medications_read} medication orders on record is ALL therapy"
                         if facts.medications_read else "Therapy: no medication orders on record")
        lines += [f"Not read: {gap.detail}" for gap in facts.gaps if gap.kind != "invalid"]
        lines += [f"Read only for exclusions: {gap.detail}" for gap in facts.gaps if gap.kind == "invalid"]
        return "**What this relied on:**\n" + "\n".join(f"- {line}" for line in lines)

    def footer(self) -> str:
        texts = self.k.texts
        return f"*{texts['source_note']} {texts['disclaimer']}*"
