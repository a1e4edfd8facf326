"""The report: cards shown, accepted and overridden per rule, with the override reasons."""
from __future__ import annotations

import sqlalchemy as sa

from .db import Database
from .schema import feedback, issued_cards


def report(db: Database) -> list[dict]:
    """Per rule and indicator: cards shown, distinct cards accepted and overridden, and the override
    reasons (code None: no reason given) with their counts. Feedback about cards we never issued is
    reported under the rule "(unknown card)"."""
    c, f = issued_cards, feedback
    rule = sa.func.coalesce(c.c.rule, "(unknown card)").label("rule")
    indicator = sa.func.coalesce(c.c.indicator, "-").label("indicator")
    joined = f.outerjoin(c, c.c.card_uuid == f.c.card_uuid)
    cards_counted = sa.func.count(sa.distinct(f.c.card_uuid))
    rows: dict[tuple[str, str], dict] = {}

    def row(key):
        return rows.setdefault(key, {"rule": key[0], "indicator": key[1], "shown": 0, "accepted": 0,
                                     "overridden": 0, "override_reasons": []})

    with db.read() as conn:
        for r, i, n in conn.execute(sa.select(c.c.rule, c.c.indicator, sa.func.count())
                                    .group_by(c.c.rule, c.c.indicator)):
            row((r, i))["shown"] = n
        for r, i, outcome, n in conn.execute(sa.select(rule, indicator, f.c.outcome, cards_counted)
                                             .select_from(joined).group_by(rule, indicator, f.c.outcome)):
            row((r, i))[outcome] = n
        for r, i, system, code, display, n in conn.execute(
                sa.select(rule, indicator, f.c.reason_system, f.c.reason_code,
                          sa.func.max(f.c.reason_display), cards_counted)
                .select_from(joined).where(f.c.outcome == "overridden")
                .group_by(rule, indicator, f.c.reason_system, f.c.reason_code)):
            row((r, i))["override_reasons"].append(
                {"system": system, "code": code, "display": display, "count": n})
    for r in rows.values():
        r["override_reasons"].sort(key=lambda x: (-x["count"], x["code"] is None, x["code"] or ""))
    return sorted(rows.values(), key=lambda r: (r["rule"] == "(unknown card)", r["rule"], r["indicator"]))


def format_report(rows: list[dict]) -> str:
    """The report as a plain text table."""
    header = ("rule", "indicator", "shown", "accepted", "overridden", "override reasons")
    lines = []
    for r in rows:
        reasons = ", ".join(f"{x['code'] or '(no reason)'} x{x['count']}" for x in r["override_reasons"])
        lines.append((r["rule"], r["indicator"], str(r["shown"]), str(r["accepted"]), str(r["overridden"]),
                      reasons or "-"))
    if not lines:
        return "No hook calls or feedback recorded yet."
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    numeric = {2, 3, 4}

    def fmt(line):
        return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
    total = [sum(r[k] for r in rows) for k in ("shown", "accepted", "overridden")]
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, lines), rule,
                      fmt(("total", "", *map(str, total), ""))])
