"""Change-impact review of the knowledge: `cds-service knowledge check DIR` and
`cds-service knowledge diff OLD NEW`.

The diff runs a fixed corpus through the real pipeline under each folder (the same HookHandler that
answers the EHR, so it follows the decision whatever it becomes): every demo patient with every order
code of either folder, and the hook-request fixtures of the tests. It prints every outcome that
changes (card indicator, summary, PAMA rating), as text and as Markdown a committee can sign."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable

from . import config, demo, hooks, knowledge
from .cards import PAMA_PREFIX, PAMA_SYSTEM
from .fhir_data import DataUnavailable
from .hooks import HookError

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"  # the tests' hook requests, if present
FIELDS = ("indicator", "summary", "PAMA")


# -- check -----------------------------------------------------------------------------------------

def check(directory: str, out=print) -> int:
    """Validate a knowledge folder and list every code that is not VERIFIED. 0 valid, 1 invalid."""
    try:
        k = knowledge.load(directory)
    except knowledge.KnowledgeError as exc:
        out(f"{directory}: INVALID: {exc}")
        return 1
    codes = [(f"procedures.{p.id}", c) for p in k.procedures.values() for c in p.codes]
    codes += [(f"diagnoses.{d.id}", c) for d in k.diagnosis_lists.values() for c in d.codes]
    out(f"{directory}: valid. Release {k.release.version}, digest {k.release.digest}")
    out(f"{len(k.procedures)} procedures, {len(k.variants)} variants, {len(codes)} codes")
    unverified = [(where, c) for where, c in codes if c.status != "VERIFIED"]
    if not unverified:
        out("Every code is VERIFIED.")
        return 0
    out(f"\n{len(unverified)} codes are not VERIFIED:")
    width = max(len(c.status) for _w, c in unverified)
    for where, c in sorted(unverified, key=lambda x: (x[1].status, x[0], x[1].system, x[1].code)):
        out(f"  {c.status.ljust(width)}  {where}: {k.system_names.get(c.system, c.system)} {c.code} {c.display}")
    return 0


# -- diff ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    body: dict


@dataclass(frozen=True)
class Change:
    case: str
    order: str
    field: str
    old: str
    new: str


def order_codes(*folders: knowledge.Knowledge) -> list[dict]:
    """Every order code of every procedure of the folders, as codings, once each."""
    seen: dict[tuple[str, str], dict] = {}
    for k in folders:
        for p in k.procedures.values():
            for c in p.codes:
                seen.setdefault((k.system_uris[c.system], c.code),
                                {"system": k.system_uris[c.system], "code": c.code, "name": k.system_names[c.system]})
    return sorted(seen.values(), key=lambda c: (c["name"], c["code"]))


def corpus(old: knowledge.Knowledge, new: knowledge.Knowledge, today: date,
           request_files: Iterable[Path] = ()) -> list[Case]:
    cases = []
    for patient in demo.load():
        for coding in order_codes(old, new):
            body = demo.order_select(patient, {"system": coding["system"], "code": coding["code"]}, today)
            cases.append(Case(f"{patient.id}, {coding['name']} {coding['code']}", body))
    for path in request_files:
        body = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(body, dict) and isinstance(body.get("hook"), str):
            cases.append(Case(path.name, body))
    return cases


def outcomes(handler, body: dict) -> dict[str, dict[str, str]]:
    """order id (or "the call", for a card about no one order) -> indicator, summary and PAMA rating."""
    service = next((s for s in hooks.SERVICES.values() if s.hook == body.get("hook")), None)
    try:
        if service is None:
            raise HookError(400, f"no service answers hook {body.get('hook')!r}")
        request = hooks.parse(body, service)
        rendered = handler.evaluate(request, record=False).outcome.rendered
    except HookError as exc:
        return {"the call": {"indicator": f"HTTP {exc.status}", "summary": exc.message, "PAMA": "-"}}
    except DataUnavailable as exc:
        return {"the call": {"indicator": "HTTP 412", "summary": str(exc), "PAMA": "-"}}
    summaries = {c["uuid"]: c["summary"] for c in rendered.body.get("cards", [])}
    result: dict[str, dict[str, str]] = {}
    for order in request.orders:
        result[f"order {order.get('id')}"] = {"indicator": "no card", "summary": "-", "PAMA": "-"}
    for card in rendered.issued:
        key = f"order {card.order_id}" if card.order_id else "the call"
        entry = result.setdefault(key, {"indicator": "no card", "summary": "-", "PAMA": "-"})
        if entry["indicator"] == "no card":
            entry.update(indicator=card.indicator, summary=summaries.get(card.uuid, "-"))
        else:  # two cards for one order: both, in order
            entry.update(indicator=f"{entry['indicator']}; {card.indicator}",
                         summary=f"{entry['summary']}; {summaries.get(card.uuid, '-')}")
    for action in rendered.body.get("systemActions", []):
        resource = action.get("resource", {})
        codes = [c["code"] for e in resource.get("extension", []) if e.get("url") == PAMA_PREFIX
                 for c in e["valueCodeableConcept"]["coding"] if c.get("system") == PAMA_SYSTEM]
        result.setdefault(f"order {resource.get('id')}", {"indicator": "no card", "summary": "-", "PAMA": "-"})[
            "PAMA"] = codes[0] if codes else "-"
    return result


@dataclass(frozen=True)
class Diff:
    old: knowledge.Knowledge
    new: knowledge.Knowledge
    cases: int
    today: date
    changes: tuple[Change, ...]


def diff(old_dir: str, new_dir: str, today: date | None = None, request_files: Iterable[Path] | None = None) -> Diff:
    from . import build_handler
    old, new = knowledge.load(old_dir), knowledge.load(new_dir)
    today = today or date.today()
    files = sorted(FIXTURES.glob("*.json")) if request_files is None else list(request_files)
    if not demo.load():
        raise knowledge.KnowledgeError("no demo patients (demo/patients/) beside the package: run the diff from a "
                                       "checkout of the repository, where the corpus is")
    cases = corpus(old, new, today, files)
    handlers = []
    for k in (old, new):
        handler = build_handler(config.Settings(), k)  # no site code map, no suppression: the knowledge alone
        handler.today = lambda: today
        handlers.append(handler)
    changes = []
    for case in cases:
        before, after = (outcomes(h, json.loads(json.dumps(case.body))) for h in handlers)
        for order in sorted(set(before) | set(after)):
            a = before.get(order, dict.fromkeys(FIELDS, "-"))
            b = after.get(order, dict.fromkeys(FIELDS, "-"))
            changes += [Change(case.name, order, f, a[f], b[f]) for f in FIELDS if a[f] != b[f]]
    return Diff(old, new, len(cases), today, tuple(changes))


def heading(d: Diff) -> list[str]:
    lines = [f"Old: release {d.old.release.label}", f"New: release {d.new.release.label}",
             f"Corpus: {d.cases} hook calls (the demo patients with every order code, and the request fixtures), "
             f"on {d.today.isoformat()}"]
    if d.old.release.digest != d.new.release.digest and d.old.release.version == d.new.release.version:
        lines.append(f"Note: the content differs but both are release {d.new.release.version}: raise the version in "
                     "release.toml before this ships.")
    return lines


def by_order(d: Diff) -> list[tuple[str, str, dict[str, Change]]]:
    """The changes grouped per case and order, in corpus order: (case, order, field -> change)."""
    grouped: dict[tuple[str, str], dict[str, Change]] = {}
    for c in d.changes:
        grouped.setdefault((c.case, c.order), {})[c.field] = c
    return [(case, order, fields) for (case, order), fields in grouped.items()]


def as_text(d: Diff) -> str:
    lines = heading(d) + [""]
    rows = by_order(d)
    if not rows:
        return "\n".join(lines + ["No outcome changes."])
    lines.append(f"{len(rows)} changed outcome(s):")
    for case, order, fields in rows:
        lines.append(f"- {case} ({order}): " + "; ".join(f"{f} {c.old} -> {c.new}" for f, c in fields.items()))
    return "\n".join(lines)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_markdown(d: Diff) -> str:
    lines = [f"# Knowledge change-impact review: {d.old.release.label} to {d.new.release.label}", ""]
    lines += [f"- {line}" for line in heading(d)] + [""]
    rows = by_order(d)
    if rows:
        lines += [f"{len(rows)} changed outcome(s):", "", "| Case | Order | " + " | ".join(FIELDS) + " |",
                  "|---|---|" + "---|" * len(FIELDS)]
        lines += [f"| {cell(case)} | {cell(order)} | " + " | ".join(
            cell(f"{fields[f].old} → {fields[f].new}") if f in fields else "" for f in FIELDS) + " |"
            for case, order, fields in rows]
    else:
        lines.append("No outcome changes.")
    lines += ["", "## Sign-off", "", "| Role | Name | Decision | Date | Signature |", "|---|---|---|---|---|",
              "| Clinical safety officer | | | | |", "| CDS committee chair | | | | |", ""]
    return "\n".join(lines)


def run_diff(old: str, new: str, markdown: str | None, out=print) -> int:
    """0: no outcome changes; 1: changes (printed); 2: a folder is invalid."""
    try:
        d = diff(old, new)
    except knowledge.KnowledgeError as exc:
        out(f"INVALID: {exc}")
        return 2
    out(as_text(d))
    if markdown:
        Path(markdown).write_text(as_markdown(d), encoding="utf-8")
    return 1 if d.changes else 0


def add_commands(commands) -> None:
    """`cds-service knowledge check DIR` and `cds-service knowledge diff OLD NEW` (cli.py's subcommands)."""
    parser = commands.add_parser("knowledge", help="check a knowledge folder, or show what a change does",
                                 description="Review the clinical knowledge before a release.")
    sub = parser.add_subparsers(dest="knowledge_command", required=True, metavar="ACTION")
    check_parser = sub.add_parser("check", help="validate a knowledge folder and list the codes not VERIFIED")
    check_parser.add_argument("directory", metavar="DIR")
    check_parser.set_defaults(run=lambda args: check(args.directory))
    diff_parser = sub.add_parser(
        "diff", help="every outcome that changes between two knowledge folders",
        description="Run the demo patients with every order code, and the request fixtures, under OLD and NEW "
                    "and print every changed card indicator, summary and PAMA rating. Exit 0: none; 1: changes.")
    diff_parser.add_argument("old", metavar="OLD")
    diff_parser.add_argument("new", metavar="NEW")
    diff_parser.add_argument("--markdown", metavar="FILE", help="also write the review as Markdown, to sign")
    diff_parser.set_defaults(run=lambda args: run_diff(args.old, args.new, args.markdown))
