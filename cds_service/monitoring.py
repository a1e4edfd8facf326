"""The monitoring report a CDS committee reads at a glance: `cds-service report --html FILE`.

One self-contained HTML file (inline CSS, charts as inline SVG drawn here, no script, no web font, no
CDN: it opens on a hospital network with none): coverage per day (imaging orders seen, rated, not rated,
withheld, unmatched), warnings per 100 imaging orders, accepted / overridden / no feedback per rule
with the override reasons, suggestions accepted, unmatched order codes, and the cards silent mode or a
rule switched off kept from the EHR. Every chart has its figures in a table beside it."""
from __future__ import annotations

from datetime import datetime
from html import escape

import sqlalchemy as sa

from . import governance, sitecodes, suppression
from .storage import Store, feedback, hook_calls, issued_cards, utcnow

COLOURS = {"rated": "#1b6e3a", "not-rated": "#8a8a8a", "withheld": "#b35c00", "unmatched": "#5b3f99",
           "accepted": "#1b6e3a", "overridden": "#a1221b", "no feedback": "#b8b8b8", "warnings": "#b35c00"}
LABELS = {"rated": "Rated", "not-rated": "Not rated", "withheld": "Withheld (record incomplete)",
          "unmatched": "Unmatched code"}


def day_of(db, column):
    """The UTC day of a timestamp column, as text, on SQLite and PostgreSQL."""
    if db.engine.dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.date(column)


def collect(store: Store) -> dict:
    gov = governance.report(store)
    withheld_per_rule: dict[str, int] = {}
    for w in gov["withheld"]:
        withheld_per_rule[w["rule"]] = withheld_per_rule.get(w["rule"], 0) + w["count"]
    day = day_of(store, hook_calls.c.called_at)
    with store.read() as conn:
        warnings = dict(conn.execute(
            sa.select(day, sa.func.count()).select_from(issued_cards.join(hook_calls))
            .where(issued_cards.c.indicator == "warning").group_by(day)).all())
        suggestions = dict(conn.execute(
            sa.select(issued_cards.c.rule, sa.func.count(sa.distinct(feedback.c.card_uuid)))
            .select_from(feedback.join(issued_cards, issued_cards.c.card_uuid == feedback.c.card_uuid))
            .where(feedback.c.outcome == "accepted", feedback.c.suggestions != "")
            .group_by(issued_cards.c.rule)).all())
        releases = conn.execute(sa.select(hook_calls.c.knowledge_version, sa.func.count())
                                .group_by(hook_calls.c.knowledge_version)
                                .order_by(hook_calls.c.knowledge_version)).all()
    rules = []
    for r in store.report():
        if r["rule"] == "(unknown card)":
            continue
        shown = r["shown"] - withheld_per_rule.get(r["rule"], 0)
        answered = r["accepted"] + r["overridden"]
        rules.append({**r, "shown": shown, "decided": r["shown"], "no_feedback": max(shown - answered, 0),
                      "suggestions_accepted": suggestions.get(r["rule"], 0),
                      "override_rate": r["overridden"] / answered if answered else None})
    days = [{"day": d, **counts, "seen": sum(counts.values()), "warnings": warnings.get(d, 0)}
            for d, counts in gov["days"].items()]
    return {"days": days, "rules": rules, "releases": [(v or "(not recorded)", n) for v, n in releases],
            "withheld": gov["withheld"], "unmatched": sitecodes.report(store),
            "suppressed": suppression.report(store)}


# -- charts --------------------------------------------------------------------------------------

def svg(chart_id: str, title: str, description: str, width: int, height: int, body: list[str]) -> str:
    return (f'<svg class="chart" id="{chart_id}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(description)}</desc>'
            + "".join(body) + "</svg>")


def legend(keys: list[str], names: dict[str, str], x: int, y: int) -> list[str]:
    parts, at = [], x
    for key in keys:
        parts.append(f'<rect x="{at}" y="{y - 10}" width="12" height="12" fill="{COLOURS[key]}"/>'
                     f'<text x="{at + 16}" y="{y}" font-size="12" fill="#1a1a1a">{escape(names.get(key, key))}</text>')
        at += 24 + 7 * len(names.get(key, key))
    return parts


def coverage_chart(days: list[dict]) -> str:
    keys = ["rated", "not-rated", "withheld", "unmatched"]
    width, height, left, top, bottom = 720, 260, 44, 30, 40
    slot = (width - left - 10) / max(len(days), 1)
    most = max([d["seen"] for d in days] + [1])
    scale = (height - top - bottom) / most
    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#4a4a4a"/>',
            f'<text x="{left - 6}" y="{top + 4}" font-size="11" text-anchor="end" fill="#1a1a1a">{most}</text>',
            f'<text x="{left - 6}" y="{height - bottom}" font-size="11" text-anchor="end" fill="#1a1a1a">0</text>']
    for i, d in enumerate(days):
        x, y = left + i * slot + slot * 0.15, height - bottom
        for key in keys:
            h = d[key] * scale
            if h:
                y -= h
                body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                            f'fill="{COLOURS[key]}"><title>{escape(d["day"])}: {d[key]} {LABELS[key].lower()}</title></rect>')
        body.append(f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 14}" font-size="11" text-anchor="middle" '
                    f'fill="#1a1a1a">{escape(d["day"][5:])}</text>')
        if d["seen"]:
            body.append(f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle" '
                        f'fill="#1a1a1a">{d["rated"] / d["seen"]:.0%}</text>')
    body += legend(keys, LABELS, left, height - 8)
    return svg("coverage", "Imaging orders per day by outcome",
               "Stacked bars per day: rated, not rated, withheld, unmatched; the percentage above each bar is the "
               "share rated.", width, height, body)


def warnings_chart(days: list[dict]) -> str:
    width, height, left, top, bottom = 720, 200, 44, 24, 30
    rates = [(d["day"], 100 * d["warnings"] / d["seen"] if d["seen"] else 0.0) for d in days]
    most = max([r for _d, r in rates] + [1.0])
    slot = (width - left - 10) / max(len(rates), 1)
    scale = (height - top - bottom) / most
    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#4a4a4a"/>']
    for i, (day, rate) in enumerate(rates):
        x, h = left + i * slot + slot * 0.15, rate * scale
        body.append(f'<rect class="bar" x="{x:.1f}" y="{height - bottom - h:.1f}" width="{slot * 0.7:.1f}" '
                    f'height="{h:.1f}" fill="{COLOURS["warnings"]}"><title>{escape(day)}: {rate:.1f} warnings per 100 '
                    f'imaging orders</title></rect>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom - h - 4:.1f}" font-size="11" '
                    f'text-anchor="middle" fill="#1a1a1a">{rate:.1f}</text>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 14}" font-size="11" text-anchor="middle" '
                    f'fill="#1a1a1a">{escape(day[5:])}</text>')
    return svg("warnings", "Warnings per 100 imaging orders, per day",
               "One bar per day: warning cards decided per 100 imaging orders seen.", width, height, body)


def feedback_chart(rules: list[dict]) -> str:
    keys = ["accepted", "overridden", "no feedback"]
    names = {k: k.capitalize() for k in keys}
    row, left, width = 26, 380, 760
    height = 40 + row * max(len(rules), 1)
    most = max([r["accepted"] + r["overridden"] + r["no_feedback"] for r in rules] + [1])
    scale = (width - left - 60) / most
    body = []
    for i, r in enumerate(rules):
        y, x = 10 + i * row, left
        body.append(f'<text x="{left - 6}" y="{y + 14}" font-size="11" text-anchor="end" fill="#1a1a1a">'
                    f"{escape(r['rule'])}</text>")
        for key, value in zip(keys, (r["accepted"], r["overridden"], r["no_feedback"])):
            if value:
                body.append(f'<rect class="bar" x="{x:.1f}" y="{y}" width="{value * scale:.1f}" height="18" '
                            f'fill="{COLOURS[key]}"><title>{escape(r["rule"])}: {value} {key}</title></rect>')
                x += value * scale
        body.append(f'<text x="{x + 6:.1f}" y="{y + 14}" font-size="11" fill="#1a1a1a">{r["shown"]}</text>')
    body += legend(keys, names, left, height - 6)
    return svg("feedback", "Cards shown per rule by feedback",
               "Horizontal stacked bars per rule: accepted, overridden, and no feedback; the number is the cards "
               "shown to the EHR.", width, height, body)


# -- the page ------------------------------------------------------------------------------------

def table(caption: str, header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(
        (f'<th scope="row">{escape(str(c))}</th>' if i == 0 else
         f'<td class="{"num" if i in numeric else ""}">{escape(str(c))}</td>') for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f'<div class="table-wrap"><table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>' \
           f'<tbody>{body}</tbody></table></div>'


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


CSS = """
body { margin: 0; font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1a1a1a; }
header, main, footer { max-width: 60rem; margin: 0 auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 1rem 0 .25rem; } h2 { font-size: 1.2rem; margin: 1.75rem 0 .5rem; border-bottom: 1px solid #c8c8c8; }
.muted, footer { color: #4a4a4a; font-size: .9rem; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; padding: 0; list-style: none; }
.figures li { border: 1px solid #c8c8c8; border-radius: .3rem; padding: .5rem .75rem; min-width: 10rem; }
.figures strong { display: block; font-size: 1.5rem; }
.chart { max-width: 100%; height: auto; display: block; margin: .5rem 0; }
.table-wrap { overflow-x: auto; } table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .92rem; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { border: 1px solid #c8c8c8; padding: .3rem .5rem; text-align: left; vertical-align: top; } thead th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def render(data: dict, generated: datetime | None = None) -> str:
    generated = generated or utcnow()
    days, rules = data["days"], data["rules"]
    seen = sum(d["seen"] for d in days)
    rated = sum(d["rated"] for d in days)
    warnings = sum(d["warnings"] for d in days)
    answered = sum(r["accepted"] + r["overridden"] for r in rules)
    overridden = sum(r["overridden"] for r in rules)
    shown = sum(r["shown"] for r in rules)
    parts = [f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Monitoring report · ACR imaging guidance for pediatric ALL staging</title><style>{CSS}</style></head>
<body><header><h1>Monitoring report</h1>
<p class="muted">ACR imaging guidance for pediatric ALL staging. Generated {escape(generated.strftime('%Y-%m-%d %H:%M'))} UTC
from the audit database. Days are UTC. Knowledge releases that answered:
{escape(", ".join(f"{v} ({n} calls)" for v, n in data["releases"]) or "none yet")}.</p></header><main>
<ul class="figures" aria-label="Figures for the whole period">
<li><strong>{seen}</strong>imaging orders seen</li>
<li><strong>{percent(rated / seen if seen else None)}</strong>coverage (rated of seen)</li>
<li><strong>{100 * warnings / seen if seen else 0:.1f}</strong>warnings per 100 imaging orders</li>
<li><strong>{percent(overridden / answered if answered else None)}</strong>override rate, of the {answered} cards with feedback</li>
<li><strong>{percent((shown - answered) / shown if shown else None)}</strong>of {shown} cards shown had no feedback</li>
</ul>
<h2 id="coverage">Coverage: imaging orders per day</h2>
<p>Each selected imaging order of each hook call (order-select fires again as an order is edited, so an order
may count more than once). <em>Rated</em>: an ACR rating was given; <em>not rated</em>: the study is known but the
guidance does not rate it for this patient (out of scope, no rating for the variant, not for staging);
<em>withheld</em>: part of the record could not be read; <em>unmatched</em>: an imaging-looking code the knowledge
and the site code map do not know.</p>
{coverage_chart(days)}
{table("Imaging orders per day", ["Day", "Seen", "Rated", "Not rated", "Withheld", "Unmatched", "Coverage"],
       [[d["day"], d["seen"], d["rated"], d["not-rated"], d["withheld"], d["unmatched"],
         percent(d["rated"] / d["seen"] if d["seen"] else None)] for d in days], {1, 2, 3, 4, 5, 6})}
<h2 id="warnings">Warnings per 100 imaging orders</h2>
<p>Warning cards decided per 100 imaging orders seen (in silent mode: the warnings that would have been shown).</p>
{warnings_chart(days)}
{table("Warnings per day", ["Day", "Warnings", "Imaging orders", "Per 100"],
       [[d["day"], d["warnings"], d["seen"], f'{100 * d["warnings"] / d["seen"]:.1f}' if d["seen"] else "-"]
        for d in days], {1, 2, 3})}
<h2 id="feedback">Feedback per rule</h2>
<p>A CDS Hooks client reports only the cards accepted and overridden, never the ones it ignored: <em>no feedback</em>
is the cards shown less those two, and the <strong>override rate is over the cards with feedback</strong> (accepted +
overridden), not over the cards shown. Cards silent mode or a switched-off rule kept from the EHR are not counted as shown.</p>
{feedback_chart(rules)}
{table("Cards per rule and their feedback", ["Rule", "Indicator", "Shown", "Accepted", "Overridden", "No feedback",
       "Override rate (of feedback)", "Suggestions accepted", "Override reasons"],
       [[r["rule"], r["indicator"], r["shown"], r["accepted"], r["overridden"], r["no_feedback"],
         percent(r["override_rate"]), r["suggestions_accepted"],
         ", ".join(f"{x['display'] or x['code'] or '(no reason)'} x{x['count']}" for x in r["override_reasons"]) or "-"]
        for r in rules], {2, 3, 4, 5, 6, 7})}
<h2 id="withheld">Cards kept from the EHR (silent mode, rules off)</h2>
<p>Decided and audited as live, not shown: what the EHR would have shown.</p>
{table("Cards withheld per rule", ["Rule", "Indicator", "Why", "Cards"],
       [[w["rule"], w["indicator"], "silent mode" if w["why"] == "silent" else f"rule off: {w['reason']}", w["count"]]
        for w in data["withheld"]], {3}) if data["withheld"] else "<p>None.</p>"}
<h2 id="unmatched">Unmatched imaging order codes</h2>
<p>Imaging-looking orders whose code no study of the knowledge or the site code map has: map them next.</p>
{table("Unmatched order codes", ["Code", "System", "Orders", "Last seen (UTC)"],
       [[u["code"], u["system"], u["count"], u["last_seen"].strftime("%Y-%m-%d %H:%M")] for u in data["unmatched"]],
       {2}) if data["unmatched"] else "<p>None.</p>"}
<h2 id="repeats">Repeat warnings not shown after an override</h2>
{table("Suppressed repeat warnings", ["Rule", "Cards"], [[s["rule"], s["count"]] for s in data["suppressed"]], {1})
 if data["suppressed"] else "<p>None.</p>"}
</main><footer><p>Counts come from the service's audit database; the charts are drawn into this file, which
needs no network.</p></footer></body></html>
"""]
    return "".join(parts)


def write(store: Store, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(collect(store)))
