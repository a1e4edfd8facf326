"""The decision: patient facts + selected orders + knowledge -> scope and findings (pure).

Knows nothing of Flask, HTTP or JSON. Silence is the default: a finding is made only when
the patient is in the scenario and the order's procedure is known.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable, Sequence

from .facts import Diagnosis, PatientFacts
from .knowledge import Knowledge, OutOfScopeReason, Procedure, Statement, VariantRating

RELAPSE = {"relapse", "recurrence"}
REMISSION = {"inactive", "remission", "resolved"}
UNCONFIRMED = {"unconfirmed", "provisional", "differential"}
LEUKEMIA_KINDS = {"all", "all-remission", "all-relapse", "excluded"}


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
    relevant: bool                        # a leukemia is on record: an out-of-scope card may explain
    reasons: tuple[Reason, ...]           # empty when the guidance applies
    age: int | None
    sex: str | None
    diagnoses: tuple[Diagnosis, ...]      # the ALL diagnoses relied on
    diagnosis_date: date | None
    symptoms: tuple[Diagnosis, ...]
    today: date


@dataclass(frozen=True)
class Order:
    id: str
    procedure: Procedure


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


def assess(facts: PatientFacts, reasons: Iterable[Diagnosis], knowledge: Knowledge, today: date) -> Scope:
    """Is the patient in the scenario (child, confirmed, active, new ALL, no symptoms)? If not, why not."""
    policies = knowledge.policies
    reasons = list(reasons)
    recorded = [d for d in facts.diagnoses if d.kind in LEUKEMIA_KINDS]
    given = [d for d in reasons if d.kind in LEUKEMIA_KINDS]
    all_dx = [d for d in recorded if d.kind == "all"]
    if policies.order_reason_can_establish_all:
        all_dx += [d for d in given if d.kind == "all"]
    active = [d for d in all_dx if d.clinical_status not in RELAPSE | REMISSION
              and (d.clinical_status or policies.absent_clinical_status_counts_as_active)]
    confirmed = [d for d in active if d.verification_status == "confirmed"
                 or (d.verification_status is None and policies.absent_verification_counts_as_confirmed)]
    leukemia = recorded + given
    symptoms = tuple(d for d in list(facts.diagnoses) + reasons if d.kind == "symptom")
    age = facts.age_on(today)
    if age is not None and age < 0:
        age = None  # a birth date after today is no usable age
    dates = [d.date for d in (confirmed or active) if d.date]
    diagnosis_date = min(dates) if dates else None

    found: dict[str, dict] = {}
    if age is None:
        found["age-unknown"] = {}
    elif age > policies.max_age_years:
        found["adult"] = {}
    excluded = [d for d in leukemia if d.kind == "excluded"]
    if excluded:
        found["excluded-diagnosis"] = {"display": excluded[0].display}
    if any(d.kind == "all-relapse" for d in leukemia) or any(d.clinical_status in RELAPSE for d in all_dx):
        found["relapse"] = {}
    if any(d.kind == "all-remission" for d in leukemia) or any(d.clinical_status in REMISSION for d in all_dx):
        found["remission"] = {}
    if active and not confirmed:
        found["unconfirmed"] = {}
    if confirmed and diagnosis_date is None:
        found["date-unknown"] = {}
    elif diagnosis_date and diagnosis_date < today - timedelta(days=policies.new_within_days):
        found["not-new"] = {"days": policies.new_within_days}
    if symptoms:
        found["symptomatic"] = {"display": symptoms[0].display.lower()}

    ordered = tuple(Reason(reason, found[rid]) for rid, reason in policies.out_of_scope.items() if rid in found)
    return Scope(
        applies=bool(confirmed) and not ordered,
        relevant=bool(recorded),
        reasons=ordered,
        age=age, sex=facts.sex, diagnoses=tuple(confirmed or active or all_dx),
        diagnosis_date=diagnosis_date, symptoms=symptoms, today=today,
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


def decide(facts: PatientFacts, orders: Sequence[Order], reasons: Iterable[Diagnosis],
           knowledge: Knowledge, today: date) -> Decision:
    scope = assess(facts, reasons, knowledge, today)
    findings = ()
    if scope.applies:
        findings = tuple(f for f in (judge(o, facts.sex, knowledge) for o in orders) if f)
    return Decision(scope, findings, tuple(orders))
