"""Reader of policies.toml: the decisions the sources leave open (age, the new-diagnosis window,
statuses, indication, therapy, completeness), the out-of-scope reasons, override reasons, PAMA."""
from __future__ import annotations

from types import MappingProxyType

from .model import Code, OutOfScopeReason, Policies, phrases
from .toml_file import TomlFile

NEEDED_REASONS = {"age-unknown", "adult", "excluded-diagnosis", "relapse", "remission", "therapy-started", "contradictory",
                  "status-unknown", "diagnosis-invalid", "unconfirmed", "date-unknown", "not-new", "symptomatic"}


def read(f: TomlFile) -> Policies:
    d = f.data
    age = f.get(d, "age", "", dict)
    dx = f.get(d, "diagnosis", "", dict)
    cards = f.get(d, "cards", "", dict)
    indication = f.get(d, "indication", "", dict)
    therapy = f.get(d, "therapy", "", dict)
    completeness = f.get(d, "completeness", "", dict)
    reasons = {}
    for i, t in enumerate(f.get(d, "out_of_scope", "", list)):
        at = f"out_of_scope[{i}]"
        rid = f.get(t, "id", at)
        reasons[rid] = OutOfScopeReason(rid, f.get(t, "summary", at), f.get(t, "detail", at), f.get(t, "explain", at, bool))
    if NEEDED_REASONS - set(reasons):
        raise f.fail("out_of_scope", f"missing reasons: {', '.join(sorted(NEEDED_REASONS - set(reasons)))}")
    override = f.get(d, "override_reasons", "", dict)
    override_system = f.get(override, "system", "override_reasons")
    override_codes = tuple(
        Code(override_system, f.get(c, "code", f"override_reasons.codes[{i}]"),
             f.get(c, "display", f"override_reasons.codes[{i}]"), "ours")
        for i, c in enumerate(f.get(override, "codes", "override_reasons", list)))
    max_age = f.get(age, "max_years", "age", int)
    window = f.get(dx, "new_within_days", "diagnosis", int)
    if not 0 < max_age < 30:
        raise f.fail("age.max_years", f"{max_age} is not a pediatric age limit")
    if window <= 0:
        raise f.fail("diagnosis.new_within_days", "must be a positive number of days")
    return Policies(
        max_age_years=max_age,
        new_within_days=window,
        absent_verification_counts_as_confirmed=f.get(dx, "absent_verification_counts_as_confirmed", "diagnosis", bool),
        absent_clinical_status_counts_as_active=f.get(dx, "absent_clinical_status_counts_as_active", "diagnosis", bool),
        order_reason_can_establish_all=f.get(dx, "order_reason_can_establish_all", "diagnosis", bool),
        staging_text=phrases(f.strings(indication, "staging_words", "indication"),
                             f.strings(indication, "staging_acronyms", "indication")),
        not_given_statuses=MappingProxyType({
            "MedicationRequest": frozenset(f.strings(therapy, "not_given_statuses", "therapy")),
            **{kind: frozenset(f.strings(f.get(therapy, "not_given", "therapy", dict), kind, "therapy.not_given"))
               for kind in ("MedicationAdministration", "MedicationStatement", "Procedure")}}),
        withhold_when_unread=frozenset(f.strings(completeness, "withhold_when_unread", "completeness")),
        withheld_summary=f.summary(completeness, "withheld_summary", "completeness"),
        withheld_detail=f.get(completeness, "withheld_detail", "completeness"),
        explain_out_of_scope=f.get(cards, "explain_out_of_scope", "cards", bool),
        out_of_scope_summary=f.get(cards, "out_of_scope_summary", "cards"),
        out_of_scope=MappingProxyType(reasons),
        override_system=override_system,
        override_reasons=override_codes,
        pama_qcdsm=f.get(f.get(d, "pama", "", dict), "qcdsm", "pama"),
        sex_codes=MappingProxyType({code: sex for sex in ("male", "female")
                                    for code in f.strings(f.get(d, "sex", "", dict), sex, "sex")}),
    )
