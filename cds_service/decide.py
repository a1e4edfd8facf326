"""The decision: patient facts + selected orders + knowledge -> scope and findings (pure).

Knows nothing of Flask, HTTP or JSON. Silence is the default: a finding is made only when
the patient is in the scenario and the order's procedure is known.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable, Sequence

from .facts import ALL_KINDS, UNKNOWN, Evidence, Gap, PatientFacts
from .knowledge import Knowledge, OutOfScopeReason, Procedure, Statement, VariantRating

RELAPSE = {"relapse", "recurrence"}
REMISSION = {"inactive", "remission", "resolved"}
UNCONFIRMED = {"unconfirmed", "provisional", "differential"}


@dataclass(frozen=True)
class Reason:
    """Why the guidance does not apply: the knowledge's reason with the values for its text."""
    reason: OutOfScopeReason
    values: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def summary(self) -> str:
        return self.reason.summary.format(**self.values)

    @property
    def detail(self) -> str:
        return self.reason.detail.format(**self.values)


@dataclass(frozen=True)
class Scope:
    applies: bool
    relevant: bool                        # a leukemia is coded on record: an out-of-scope card may explain
    reasons: tuple[Reason, ...]           # why the child is out; empty when the guidance applies or is withheld
    withheld: tuple[Gap, ...]             # in scope on what was read, but these gaps could hide an exclusion
    age: int | None
    sex: str | None
    diagnoses: tuple[Evidence, ...]       # the ALL diagnoses relied on
    diagnosis_date: date | None
    symptoms: tuple[Evidence, ...]
    therapy: tuple[Evidence, ...]
    today: date


@dataclass(frozen=True)
class Order:
    id: str
    procedure: Procedure
    staging: bool | None = None           # from the order's stated reasons; None: no reason stated


@dataclass(frozen=True)
class Finding:
    """What the guidance says about one selected order for this patient."""
    order_id: str
    procedure: Procedure
    rating: VariantRating | None          # None: the criteria do not rate it for this patient
    statement: Statement | None           # a fact stated without a rating, if any
    alternative: Procedure | None         # what to suggest instead, if anything
    alternative_rating: VariantRating | None

    @property
    def pama(self) -> str:
        return self.rating.rating.pama if self.rating else "no-criteria-apply"


@dataclass(frozen=True)
class Decision:
    scope: Scope
    findings: tuple[Finding, ...]
    orders: tuple[Order, ...]             # the selected orders with a known procedure


def assess(facts: PatientFacts, reasons: Iterable[Evidence], knowledge: Knowledge, today: date) -> Scope:
    """Is the child in the scenario (child, confirmed, active, new ALL, no symptoms, no therapy)?

    Asymmetric: only an exact, active, confirmed ALL diagnosis brings a child in; any evidence
    that might take the child out counts, however it was read; and when the child is in on what
    was read but a gap in the record could hide such evidence, the rating is withheld."""
    policies = knowledge.policies
    recorded = list(facts.evidence)
    everything = recorded + list(reasons)
    all_evidence = [e for e in everything if e.kind in ALL_KINDS]
    all_dx = [e for e in recorded if e.kind == "all" and not e.from_text]

    def active(e: Evidence) -> bool:
        return e.clinical_status == "active" or (e.clinical_status is None and policies.absent_clinical_status_counts_as_active)

    def confirmed(e: Evidence) -> bool:
        return e.verification_status == "confirmed" or (
            e.verification_status is None and policies.absent_verification_counts_as_confirmed)

    clean = [e for e in all_dx if e.exact and active(e) and confirmed(e)]
    symptoms = tuple(e for e in everything if e.kind == "symptom")
    therapy = tuple(e for e in everything if e.kind == "therapy")
    age = facts.age_on(today)
    if age is not None and age < 0:
        age = None  # a birth date after today is no usable age
    dates = [e.date for e in recorded if e.kind in ALL_KINDS]
    diagnosis_date = None if None in dates or not dates else min(dates)

    found: dict[str, dict] = {}
    if age is None:
        found["age-unknown"] = {}
    elif age > policies.max_age_years:
        found["adult"] = {}
    if excluded := [e for e in everything if e.kind == "excluded"]:
        found["excluded-diagnosis"] = {"display": excluded[0].display}
    if any(e.kind == "all-relapse" or e.clinical_status in RELAPSE for e in all_evidence):
        found["relapse"] = {}
    if any(e.kind == "all-remission" or e.clinical_status in REMISSION for e in all_evidence):
        found["remission"] = {}
    if therapy:
        found["therapy-started"] = {"display": therapy[0].display}
    if any(e.clinical_status == UNKNOWN for e in all_evidence) or (
            not clean and any(e.verification_status == UNKNOWN for e in all_dx)):
        found["status-unknown"] = {}
    if all_dx and not clean:
        if not any(e.exact for e in all_dx):
            found["diagnosis-invalid"] = {}
        if any(e.verification_status in UNCONFIRMED for e in all_dx):
            found["unconfirmed"] = {}
    if contradicted := [e for e in clean if e.contradiction]:
        found["contradictory"] = {"what": contradicted[0].contradiction}
    if clean and None in dates:
        found["date-unknown"] = {}
    elif clean and diagnosis_date < today - timedelta(days=policies.new_within_days):
        found["not-new"] = {"days": policies.new_within_days}
    if symptoms:
        found["symptomatic"] = {"display": symptoms[0].display.lower()}
    if all_dx and not clean and not found:
        found["status-unknown"] = {}  # not active or not confirmed in a way no other reason names

    ordered = tuple(Reason(reason, found[rid]) for rid, reason in policies.out_of_scope.items() if rid in found)
    in_on_what_was_read = bool(clean) and not ordered
    withheld = tuple(g for g in facts.gaps if g.kind == "unclassified" or (
        g.could_hide_evidence and g.data in policies.withhold_when_unread)) if in_on_what_was_read else ()
    return Scope(
        applies=in_on_what_was_read and not withheld,
        relevant=any(e.kind in ALL_KINDS + ("excluded",) and not e.from_text for e in recorded),
        reasons=ordered, withheld=withheld,
        age=age, sex=facts.clinical_sex or ("recorded sex data disagree" if facts.sex else None),
        diagnoses=tuple(clean or all_dx),
        diagnosis_date=diagnosis_date, symptoms=symptoms, therapy=therapy, today=today,
    )


def rate(procedure: Procedure, sex: str | None) -> VariantRating | None:
    """The rating from the first variant that applies to this sex and rates the procedure."""
    for vr in procedure.ratings:
        if vr.variant.sex == "any" or vr.variant.sex == sex:
            return vr
    return None


def judge(order: Order, sex: str | None, knowledge: Knowledge) -> Finding | None:
    procedure = order.procedure
    rating = rate(procedure, sex)
    if rating is None and sex not in ("male", "female") and procedure.ratings:
        return None  # rated only for one sex and the patient's is not recorded: stay silent
    statement = None
    if rating is None:
        statement = next((s for s in procedure.statements if s.sex in ("any", sex)), None)
    alternative = alternative_rating = None
    if rating and procedure.alternative:
        candidate = knowledge.procedures[procedure.alternative]
        alternative_rating = rate(candidate, sex)
        alternative = candidate if alternative_rating else None
    return Finding(order.id, procedure, rating, statement, alternative, alternative_rating if alternative else None)


def decide(facts: PatientFacts, orders: Sequence[Order], reasons: Iterable[Evidence],
           knowledge: Knowledge, today: date) -> Decision:
    """Rate each order in the scenario; an order whose stated reason is not staging is not rated."""
    scope = assess(facts, reasons, knowledge, today)
    findings = ()
    if scope.applies:
        staging = [o for o in orders if o.staging is not False]
        findings = tuple(f for f in (judge(o, facts.clinical_sex, knowledge) for o in staging) if f)
    return Decision(scope, findings, tuple(orders))
