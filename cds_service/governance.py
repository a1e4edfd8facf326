"""Go-live governance: silent mode and per-site rule switches, and imaging orders per day by outcome.

Silent mode (CDS_SILENT=all, or a comma-separated list of rule ids) decides, audits and counts every
call exactly as live, but the EHR gets no card and no systemAction of a silent rule: the cards are
recorded as withheld, and the report shows them as the cards that would have been shown. A site turns
a rule off (CDS_RULES_OFF, a TOML file naming each rule with the reason) without editing the
knowledge: its card is withheld the same way, with the reason; the PAMA rating is still sent.

The daily order counts (seen = rated + not rated + withheld + unmatched) are the coverage of the
monitoring report; they are written off the request path like the audit."""
from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import sqlalchemy as sa

from . import storage
from .cards import Rendered
from .config import ConfigError
from .knowledge import Knowledge
from .storage.batch import statement_writer
from .storage.schema import ID_MAX, UTCDateTime

log = logging.getLogger("cds_service")

OUTCOMES = ("rated", "not-rated", "withheld", "unmatched")  # what became of an imaging order

withheld_cards = sa.Table(
    "cds_withheld_cards", storage.metadata,
    sa.Column("card_uuid", sa.String(ID_MAX), primary_key=True),
    sa.Column("withheld_at", UTCDateTime(), nullable=False),
    sa.Column("why", sa.String(16), nullable=False),  # silent | rule-off
    sa.Column("reason", sa.String(ID_MAX)),           # the site's reason for a rule switched off
)

daily_orders = sa.Table(
    "cds_daily_orders", storage.metadata,
    sa.Column("day", sa.String(10), primary_key=True),      # UTC date, YYYY-MM-DD
    sa.Column("outcome", sa.String(16), primary_key=True),  # one of OUTCOMES
    sa.Column("count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
)


def known_rules(k: Knowledge) -> set[str]:
    """The rule ids a card can carry (its source.topic.code)."""
    rules = {f"{vr.variant.id}/{p.id}" for p in k.procedures.values() for vr in p.ratings}
    rules |= {f"statement/{p.id}" for p in k.procedures.values() if p.statements}
    rules |= {f"out-of-scope/{rid}" for rid in k.policies.out_of_scope}
    return rules | {"withheld/incomplete-record"}


@dataclass(frozen=True)
class Switches:
    silent_all: bool = False
    silent: frozenset[str] = frozenset()
    off: Mapping[str, str] = field(default_factory=dict)  # rule id -> the site's reason

    def __bool__(self) -> bool:
        return self.silent_all or bool(self.silent) or bool(self.off)

    def why(self, rule: str) -> tuple[str, str | None] | None:
        """("rule-off", reason) or ("silent", None) when the rule's card is withheld; else None."""
        if rule in self.off:
            return "rule-off", self.off[rule]
        if self.silent_all or rule in self.silent:
            return "silent", None
        return None


def parse_silent(value: str, rules: set[str]) -> tuple[bool, frozenset[str]]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        return True, frozenset()
    unknown = sorted(set(names) - rules)
    if unknown:
        raise ConfigError(f"CDS_SILENT names unknown rule(s) {', '.join(unknown)}: use 'all' or rule ids "
                          f"(a card's source.topic.code), e.g. {sorted(rules)[0]}")
    return False, frozenset(names)


def read_rules_off(path: str, rules: set[str]) -> dict[str, str]:
    """CDS_RULES_OFF: a TOML file of [[off]] tables, each with `rule` and `reason`."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"CDS_RULES_OFF={path!r}: cannot read the file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CDS_RULES_OFF={path!r}: not valid TOML: {exc}") from None
    entries = data.get("off", [])
    if not isinstance(entries, list):
        raise ConfigError(f"CDS_RULES_OFF={path!r}: expected [[off]] tables")
    off = {}
    for i, entry in enumerate(entries):
        rule = entry.get("rule") if isinstance(entry, dict) else None
        reason = entry.get("reason") if isinstance(entry, dict) else None
        if not isinstance(rule, str) or rule not in rules:
            raise ConfigError(f"CDS_RULES_OFF={path!r}: off[{i}].rule {rule!r} is not a rule of this knowledge")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"CDS_RULES_OFF={path!r}: off[{i}] ({rule}) needs a reason")
        off[rule] = reason.strip()
    return off


def switches_from_settings(settings, k: Knowledge) -> Switches:
    rules = known_rules(k)
    silent_all, silent = parse_silent(settings.silent, rules)
    off = read_rules_off(settings.rules_off, rules) if settings.rules_off else {}
    return Switches(silent_all, silent, off)


class Governance:
    """Applies the switches to an answer and records what was withheld and the orders' outcomes (without a
    store, e.g. for `cds-service explain`, it records nothing)."""

    def __init__(self, switches: Switches = Switches(), store: storage.Store | None = None):
        self.switches = switches
        self.writer = statement_writer(store, "governance") if store else None
        if store:
            self._withheld = store.insert(withheld_cards).on_conflict_do_nothing(index_elements=["card_uuid"])
            counted = store.insert(daily_orders)
            self._count = counted.on_conflict_do_update(
                index_elements=["day", "outcome"],
                set_={"count": daily_orders.c["count"] + counted.excluded["count"]})
        if switches.silent_all:
            log.warning("silent mode: every rule is decided and audited, no card or rating reaches the EHR "
                        "(CDS_SILENT=all)")
        elif switches:
            log.warning("rules withheld from the EHR", extra={"fields": {
                "event": "governance", "silent": sorted(switches.silent), "off": dict(switches.off)}})

    def apply(self, rendered: Rendered, record: bool = True) -> tuple[Rendered, tuple[tuple[str, str, str | None], ...]]:
        """The answer less the withheld cards (and, for silent rules, their orders' systemActions); the
        withheld (card uuid, why, reason). rendered.issued is kept whole: the audit counts as live."""
        s = self.switches
        withheld = tuple((c.uuid, *why) for c in rendered.issued if (why := s.why(c.rule)))
        if not withheld and not s.silent_all:
            return rendered, ()
        gone = {uuid for uuid, _why, _reason in withheld}
        silent_orders = {c.order_id for c in rendered.issued if c.uuid in gone and s.why(c.rule)[0] == "silent"}
        body = {k: v for k, v in rendered.body.items() if k not in ("systemActions", "extension")}
        body["cards"] = [c for c in rendered.body.get("cards", []) if c.get("uuid") not in gone]
        actions = [] if s.silent_all else [a for a in rendered.body.get("systemActions", [])
                                           if a.get("resource", {}).get("id") not in silent_orders]
        if actions:
            body["systemActions"] = actions
            body["extension"] = {"systemActions": actions}  # the CDS Hooks Sandbox reads only this
        if record and withheld and self.writer:
            now = storage.utcnow()
            self.writer.submit((self._withheld, [{"card_uuid": uuid[:ID_MAX], "withheld_at": now, "why": why,
                                                  "reason": reason[:ID_MAX] if reason else None}
                                                 for uuid, why, reason in withheld]))
        return replace(rendered, body=body), withheld

    def count(self, outcomes: Mapping[str, int]) -> None:
        day = storage.utcnow().date().isoformat()
        rows = [{"day": day, "outcome": o, "count": n} for o, n in outcomes.items() if n]
        if rows and self.writer:
            self.writer.submit((self._count, rows))

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()


def order_outcomes(evaluation, unmatched: int) -> dict[str, int]:
    """What became of each imaging order of one call (pipeline.Evaluation): rated, not rated (recognised,
    no rating), withheld (part of the record unread), unmatched (imaging-looking, code not known)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    counts["unmatched"] = unmatched
    decision = evaluation.decision
    decided = {o.id for o in decision.orders} if decision else set()
    rated = {f.order_id for f in decision.findings if f.rating} if decision else set()
    for r in evaluation.recognised:
        if r.procedure is None:
            continue
        if r.order_id in rated and not r.note:
            counts["rated"] += 1
        elif decision and decision.scope.withheld and r.order_id in decided and not r.note:
            counts["withheld"] += 1
        else:
            counts["not-rated"] += 1
    return counts


def report(store: storage.Store) -> dict:
    """Orders per day by outcome, and the withheld cards per rule (with the reasons)."""
    from .storage.schema import issued_cards
    with store.read() as conn:
        days: dict[str, dict[str, int]] = {}
        for day, outcome, n in conn.execute(sa.select(daily_orders.c.day, daily_orders.c.outcome,
                                                      daily_orders.c["count"]).order_by(daily_orders.c.day)):
            days.setdefault(day, dict.fromkeys(OUTCOMES, 0))[outcome] = n
        withheld = [{"rule": r, "indicator": i, "why": w, "reason": reason, "count": n} for r, i, w, reason, n in
                    conn.execute(sa.select(issued_cards.c.rule, issued_cards.c.indicator, withheld_cards.c.why,
                                           withheld_cards.c.reason, sa.func.count())
                                 .select_from(withheld_cards.join(issued_cards,
                                                                  issued_cards.c.card_uuid == withheld_cards.c.card_uuid))
                                 .group_by(issued_cards.c.rule, issued_cards.c.indicator, withheld_cards.c.why,
                                           withheld_cards.c.reason)
                                 .order_by(issued_cards.c.rule))]
    return {"days": days, "withheld": withheld}


def format_report(data: dict) -> str:
    lines = []
    if data["days"]:
        lines += ["Imaging orders per day (coverage: rated of seen):",
                  f"{'day':<10}  {'seen':>6} {'rated':>6} {'not rated':>9} {'withheld':>8} {'unmatched':>9} {'coverage':>8}"]
        for day, c in data["days"].items():
            seen = sum(c.values())
            lines.append(f"{day:<10}  {seen:>6} {c['rated']:>6} {c['not-rated']:>9} {c['withheld']:>8} "
                         f"{c['unmatched']:>9} {c['rated'] / seen:>8.0%}")
    else:
        lines.append("Imaging orders per day: none recorded.")
    if data["withheld"]:
        lines += ["", "Cards withheld from the EHR (would have been shown):"]
        lines += [f"  {w['rule']} [{w['indicator']}] x{w['count']}: "
                  + ("silent mode" if w["why"] == "silent" else f"rule off: {w['reason']}") for w in data["withheld"]]
    else:
        lines += ["", "Cards withheld from the EHR (silent mode, rules off): none."]
    return "\n".join(lines)
