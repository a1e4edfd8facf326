"""Rendering: a Decision -> CDS Hooks cards, suggestions and PAMA systemActions (pure).

A card is read in seconds while ordering: the rating and the dose compared, one sentence of why,
what to do instead, and what the decision relied on, in words. The rest (the full rationale, the
results workflow, pitfalls, scope and sources) is on the guidance page each card links to.
All clinical wording comes from the knowledge base; this module only lays it out.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import page_urls
from .decide import Decision, Finding, Scope
from .facts import Evidence, PatientFacts
from .knowledge import Knowledge, Rating

PAMA_PREFIX = "http://fhir.org/argonaut/Extension/pama-rating"
PAMA_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
SUMMARY_MAX = 139
DATA_NAMES = {"Condition": "diagnoses", "MedicationRequest": "medication orders", "Patient": "the patient record",
              "MedicationAdministration": "medication administrations", "MedicationStatement": "medication statements",
              "Procedure": "procedures"}


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


def pama_extensions(existing: Any, rating: str, qcdsm: str, consult_id: str, category: dict | None = None) -> list:
    """The order's own extensions, less any earlier PAMA rating, plus the Argonaut rating extensions.
    `category`: a Coding of the ACR category, carried beside the Argonaut code (it keeps "Disagreement")."""
    kept = [e for e in existing if not (isinstance(e, dict) and str(e.get("url", "")).startswith(PAMA_PREFIX))] \
        if isinstance(existing, list) else []
    codings = [{"system": PAMA_SYSTEM, "code": rating}] + ([category] if category else [])
    return kept + [
        {"url": PAMA_PREFIX, "valueCodeableConcept": {"coding": codings}},
        {"url": f"{PAMA_PREFIX}-qcdsm-consulted", "valueString": qcdsm},
        {"url": f"{PAMA_PREFIX}-consult-id", "valueUri": consult_id},
    ]


class Renderer:
    def __init__(self, knowledge: Knowledge, new_id: Callable[[], str] = lambda: str(uuid.uuid4())):
        self.k = knowledge
        self.new_id = new_id
        self.override_reasons = [{"system": c.system, "code": c.code, "display": c.display}
                                 for c in knowledge.policies.override_reasons]

    def source(self, rule: str) -> dict:
        topic = self.k.topic
        return {"label": topic.label, "url": topic.url,
                "topic": {"system": topic.topic_system, "code": rule, "display": topic.title,
                          "version": self.k.release.label}}  # the knowledge release that decided

    def category(self, rating: Rating) -> dict:
        return {"system": self.k.acr_category_system, "code": rating.id, "display": rating.label}

    # -- the response ------------------------------------------------------------------
    def render(self, decision: Decision, facts: PatientFacts, orders: Mapping[str, dict],
               matched_systems: Mapping[str, str], drafted: set[str], consult_id: str,
               base_url: str = "") -> Rendered:
        """base_url: the service's external base URL, for the links to the guidance pages
        (no links without it: a CDS Hooks link is absolute)."""
        cards, issued, actions = [], [], []
        suggested: set[str] = set()  # one suggestion per alternative study, even for two warnings
        scope = decision.scope
        relied_on = self.relied_on(scope, facts)
        base = base_url.rstrip("/")
        findings = {f.order_id: f for f in decision.findings}
        for finding in decision.findings:
            raw = orders[finding.order_id]
            card = None
            if finding.rating:
                card = self.rated_card(finding, raw, matched_systems.get(finding.order_id), drafted | suggested,
                                       relied_on, consult_id, base)
                if finding.alternative:
                    suggested.add(finding.alternative.id)
            elif finding.statement:
                card = self.statement_card(finding, relied_on, base)
            if card:
                cards.append(card)
                issued.append(IssuedCard(
                    card["uuid"], finding.order_id, card["source"]["topic"]["code"], card["indicator"],
                    finding.pama, tuple(s["uuid"] for s in card.get("suggestions", ()))))
        # Every recognised order gets a rating, so that an EHR replaces one an earlier call gave:
        # an order this call does not rate gets no-criteria-apply.
        for order in decision.orders:
            finding = findings.get(order.id)
            rating = finding.rating.rating if finding and finding.rating else None
            pama = finding.pama if finding else "no-criteria-apply"
            label = f"ACR: {rating.label}" if rating else "not rated by the criteria"
            raw = orders[order.id]
            actions.append({
                "type": "update",
                "description": f"PAMA appropriateness rating for {order.procedure.label}: {pama}; {label}.",
                "resource": {**raw, "extension": pama_extensions(
                    raw.get("extension"), pama, self.k.policies.pama_qcdsm, consult_id,
                    self.category(rating) if rating else None)},
            })
        if scope.withheld and any(o.staging is not False for o in decision.orders):
            card = self.withheld_card(decision, relied_on, base)
            cards.append(card)
            issued.append(IssuedCard(card["uuid"], None, card["source"]["topic"]["code"], "info", None, ()))
        elif not scope.applies and scope.relevant and decision.orders and self.k.policies.explain_out_of_scope \
                and scope.reasons and all(r.reason.explain for r in scope.reasons):
            card = self.out_of_scope_card(decision, relied_on, base)
            cards.append(card)
            issued.append(IssuedCard(card["uuid"], None, card["source"]["topic"]["code"], "info", None, ()))
        body: dict[str, Any] = {"cards": cards}
        if actions:
            body["systemActions"] = actions
            body["extension"] = {"systemActions": actions}  # the CDS Hooks Sandbox reads only this
        return Rendered(body, tuple(issued))

    # -- cards -------------------------------------------------------------------------
    def card(self, summary: str, indicator: str, parts: list[str], rule: str, links: list[dict], **extra: Any) -> dict:
        card = {"uuid": self.new_id(), "summary": summary, "indicator": indicator, "detail": "\n\n".join(parts),
                "source": self.source(rule), **extra}
        if links:
            card["links"] = links
        return card

    @staticmethod
    def links(base: str, *pages: tuple[str, str]) -> list[dict]:
        return [{"label": label, "url": base + path, "type": "absolute"} for label, path in pages] if base else []

    def rated_card(self, finding: Finding, raw: dict, system: str | None, drafted: set[str],
                   relied_on: str, consult_id: str, base: str) -> dict:
        procedure, vr = finding.procedure, finding.rating
        alternative = finding.alternative
        parts = [f"**ACR: {vr.rating.label}.** Radiation: {procedure.rrl.plain}.", f"**Why:** {procedure.why}"]
        extra: dict[str, Any] = {}
        if alternative:
            rated = f"{alternative.label} ({alternative.rrl.plain}), rated {finding.alternative_rating.rating.label},"
            if alternative.id in drafted:
                parts.append(f"**Instead:** {rated} is already among the draft orders or suggested on another card.")
            else:
                parts.append(f"**Instead:** {rated} is offered below.")
                extra["suggestions"] = [self.suggestion(finding, raw, system, consult_id)]
                extra["selectionBehavior"] = "at-most-one"
        if procedure.must_see:
            parts.append(f"**{procedure.must_see}**")
        if vr.rating.indicator != "info":
            extra["overrideReasons"] = self.override_reasons
        parts += [relied_on, self.footer()]
        links = self.links(base, (f"Full guidance: {procedure.label}", page_urls.procedure(procedure.id)),
                           ("Ratings table for this scenario", page_urls.variant(vr.variant.id)))
        return self.card(procedure.summary, vr.rating.indicator, parts, f"{vr.variant.id}/{procedure.id}", links, **extra)

    def statement_card(self, finding: Finding, relied_on: str, base: str) -> dict:
        procedure = finding.procedure
        links = self.links(base, (f"Full guidance: {procedure.label}", page_urls.procedure(procedure.id)))
        return self.card(finding.statement.summary, "info", [finding.statement.detail, relied_on, self.footer()],
                         f"statement/{procedure.id}", links)

    def out_of_scope_card(self, decision: Decision, relied_on: str, base: str) -> dict:
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
                 f"No appropriateness rating is given for: {studies}.", relied_on, self.footer()]
        links = self.links(base, ("When this guidance applies", page_urls.INDEX))
        return self.card(summary, "info", parts, f"out-of-scope/{headline.reason.id}", links)

    def withheld_card(self, decision: Decision, relied_on: str, base: str) -> dict:
        policies = self.k.policies
        studies = ", ".join(sorted({o.procedure.label for o in decision.orders}))
        parts = [policies.withheld_detail,
                 "**Could not be checked:**\n" + "\n".join(f"- {g.detail}" for g in decision.scope.withheld),
                 f"Studies not rated: {studies}.", relied_on, self.footer()]
        links = self.links(base, ("When this guidance applies", page_urls.INDEX))
        return self.card(policies.withheld_summary, "info", parts, "withheld/incomplete-record", links)

    def suggestion(self, finding: Finding, raw: dict, system: str | None, consult_id: str) -> dict:
        alternative, rating = finding.alternative, finding.alternative_rating.rating
        code = alternative.order_code.get(system) or alternative.order_code.get("cpt") \
            or next(iter(alternative.order_code.values()))
        resource = {**{k: v for k, v in raw.items() if k != "text"},  # the old narrative names the old study
                    "code": {"coding": [{"system": self.k.system_uris[code.system], "code": code.code,
                                         "display": code.display}], "text": alternative.label},
                    "extension": pama_extensions(raw.get("extension"), rating.pama, self.k.policies.pama_qcdsm,
                                                 consult_id, self.category(rating))}
        name = self.k.system_names[code.system]
        return {
            "label": f"Order {alternative.label.lower()} instead ({code.display})",
            "uuid": self.new_id(),
            "isRecommended": rating.recommend,  # not for a study the experts disagree on
            "actions": [{"type": "update",
                         "description": f"Change the selected {finding.procedure.label} order to "
                                        f"{code.display} ({name} {code.code}).",
                         "resource": resource}],
        }

    # -- what the decision relied on, in words ----------------------------------------
    def coded(self, d: Evidence) -> str:
        if d.from_text:
            return f'"{d.display}" (in text)'
        return f"{d.display} ({self.k.system_names.get(d.system, d.system)} {d.code})"

    def diagnosis(self, d: Evidence) -> str:
        text = self.coded(d)
        statuses = [s for s in (d.verification_status, d.clinical_status) if s]
        if statuses:
            text += ", " + ", ".join(f"{s} status" if s == "unknown" else s for s in statuses)
        return text + (f", diagnosed {d.date.isoformat()}" if d.date else ", no diagnosis date")

    @staticmethod
    def person(scope: Scope) -> str:
        noun = {"female": "girl", "male": "boy"}.get(scope.sex or "")
        sex = "" if noun else f" (sex: {scope.sex or 'not recorded'})"
        if scope.age is None:
            return f"{noun or 'patient'} of unknown age (no valid birth date){sex}"
        age = "under 1 year old" if scope.age == 0 else f"{scope.age}-year-old"
        return f"{age} {noun or ('child' if scope.age <= 18 else 'patient')}{sex}"

    def relied_on(self, scope: Scope, facts: PatientFacts) -> str:
        items = [self.person(scope)]
        items += [self.diagnosis(d) for d in scope.diagnoses] or ["no active ALL diagnosis recorded"]
        others = [d for d in facts.evidence if d.kind not in ("symptom", "therapy", "expected", "benign")
                  and d not in scope.diagnoses]
        items += [f"also recorded: {self.coded(d)}" for d in others]
        for kind, words in (("expected", "expected at ALL diagnosis"), ("benign", "unrelated to staging")):
            if found := list(dict.fromkeys(self.coded(d) for d in facts.evidence if d.kind == kind)):
                items.append(f"classified as {words}: " + ", ".join(found))
        items.append("symptoms: " + ", ".join(self.coded(d) for d in scope.symptoms) if scope.symptoms
                     else f"no symptoms recorded ({facts.classified} other current diagnoses classified)"
                     if facts.classified else "no symptoms recorded")
        if scope.therapy:
            items.append("therapy: " + ", ".join(self.coded(d) for d in scope.therapy))
        elif facts.medications_read is None:
            items.append(f"therapy not checked (no medication data; a diagnosis within "
                         f"{self.k.policies.new_within_days} days stands in)")
        elif facts.medications_read:
            items.append(f"no ALL therapy among {facts.medications_read} medication and procedure records")
        else:
            items.append("no medication orders on record")
        unread = sorted({DATA_NAMES.get(g.data, g.data) for g in facts.gaps if g.kind in ("unread", "unreadable")})
        if unread:
            items.append("not read in full: " + ", ".join(unread))
        if unclassified := sum(g.kind == "unclassified" for g in facts.gaps):
            items.append(f"{unclassified} item{'s' * (unclassified > 1)} could not be classified")
        if invalid := sum(g.kind == "invalid" for g in facts.gaps):
            items.append(f"{invalid} invalid diagnosis record{'s' * (invalid > 1)} read only for what takes the child out")
        if skipped := sum(g.kind == "skipped" for g in facts.gaps):
            items.append(f"{skipped} record{'s' * (skipped > 1)} about another patient left out")
        return "**Relied on:** " + "; ".join(items) + "."

    def footer(self) -> str:
        return f"*{self.k.texts['card_note']}*"
