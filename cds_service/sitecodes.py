"""The site code map: a hospital's own order codes (an Epic EAP code, a local OID system) mapped to the
knowledge's procedures, and a count of imaging-looking orders that matched nothing.

The map is a CSV file named by CDS_SITE_CODES, with the header `system,code,procedure,display`
(display optional: it labels a suggested order in the site's code). It is checked at start-up: an
unknown procedure, a code listed twice, or a system that is not an absolute URI or is a standard
vocabulary the knowledge already maps refuses the start, naming the line.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import sqlalchemy as sa
from prometheus_client import Counter

from . import fhir_data, storage
from .storage.batch import statement_writer
from .storage.schema import ID_MAX, UTCDateTime
from .config import ConfigError
from .knowledge import Knowledge, Procedure

HEADER = ("system", "code", "procedure", "display")
SYSTEM = re.compile(r"(https?://[^\s/]+(/\S*)?|urn:oid:[0-2](\.(0|[1-9]\d*))+|urn:[a-z0-9][a-z0-9-]*:\S+)")
# CPT's Radiology section is 70010-79999: an unmatched CPT code there is an imaging order we do not rate.
CPT_RADIOLOGY = (70010, 79999)

# Distinct (system, code) pairs one process tracks: callers choose the codes, so without a bound a
# flood of made-up codes would grow the metrics and the table without end. The rest count as one.
MAX_TRACKED = 500
OTHER = ("(other systems and codes)", "(other)")

UNMATCHED = Counter("cds_unmatched_imaging_orders_total",
                    "Imaging-looking orders that matched no procedure, by coding system and code", ["system", "code"])

unmatched_orders = sa.Table(
    "cds_unmatched_orders", storage.metadata,
    sa.Column("system", sa.String(ID_MAX), primary_key=True),
    sa.Column("code", sa.String(ID_MAX), primary_key=True),
    sa.Column("count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
)


class SiteCodeError(ConfigError):
    """The site code map is invalid; the message names the file and the line."""


@dataclass(frozen=True)
class SiteCode:
    system: str
    code: str
    procedure: str
    display: str

    def coding(self) -> dict:
        coding = {"system": self.system, "code": self.code}
        if self.display:
            coding["display"] = self.display
        return coding


@dataclass(frozen=True)
class SiteCodes:
    codes: tuple[SiteCode, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "_by_code", {(c.system, c.code): c for c in self.codes})

    @property
    def systems(self) -> frozenset[str]:
        return frozenset(c.system for c in self.codes)

    def lookup(self, system, code) -> SiteCode | None:
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        return self._by_code.get((system, code.strip()))

    def for_procedure(self, procedure_id: str, systems: Iterable[str] = ()) -> SiteCode | None:
        """The site's code for a procedure: one in a system of `systems` first, else the first listed."""
        own = [c for c in self.codes if c.procedure == procedure_id]
        preferred = set(systems)
        return next((c for c in own if c.system in preferred), own[0] if own else None)


def load(path: str | Path | None, knowledge: Knowledge) -> SiteCodes:
    """The map in the CSV file at `path` ("" or None: no map)."""
    if not path:
        return SiteCodes()
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SiteCodeError(f"site code map {name}: cannot be read ({exc.strerror})") from None
    rows = csv.reader(text.splitlines())
    header = tuple(h.strip().lower() for h in next(rows, ()))
    if header[:3] != HEADER[:3] or any(h not in HEADER for h in header):
        raise SiteCodeError(f"{name} line 1: the header must be {','.join(HEADER)} (display optional)")
    seen: dict[tuple[str, str], int] = {}
    codes = []
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) > len(header):
            raise SiteCodeError(f"{name} line {line}: {len(row)} fields, expected at most {len(header)}")
        values = dict(zip(header, (cell.strip() for cell in row)))
        system, code, procedure = values.get("system", ""), values.get("code", ""), values.get("procedure", "")
        if not SYSTEM.fullmatch(system):
            raise SiteCodeError(f"{name} line {line}: system {system!r} is not an absolute URI "
                                "(http(s)://..., urn:oid:1.2.3 or urn:...)")
        if knowledge.system_key(system):
            raise SiteCodeError(f"{name} line {line}: {system} is a standard vocabulary the knowledge already "
                                "maps; the site map is for the site's own codes")
        if not code:
            raise SiteCodeError(f"{name} line {line}: the code is empty")
        if procedure not in knowledge.procedures:
            raise SiteCodeError(f"{name} line {line}: unknown procedure {procedure!r}; known: "
                                f"{', '.join(knowledge.procedures)}")
        if (system, code) in seen:
            raise SiteCodeError(f"{name} line {line}: {system} {code} is already mapped on line {seen[system, code]}")
        seen[system, code] = line
        codes.append(SiteCode(system, code, procedure, values.get("display", "")))
    return SiteCodes(tuple(codes))


def match(resource: dict, knowledge: Knowledge, site: SiteCodes) -> tuple[Procedure, str] | None:
    """(procedure, system key) for an order: the knowledge's own codes first, then the site's. A site
    code's system key is its URI."""
    codings = [c for c in fhir_data.codings(resource) if isinstance(c, dict)]
    for coding in codings:
        procedure = knowledge.procedure_for(coding.get("system"), coding.get("code"))
        if procedure:
            return procedure, knowledge.system_key(coding.get("system"))
    for coding in codings:
        found = site.lookup(coding.get("system"), coding.get("code"))
        if found:
            return knowledge.procedures[found.procedure], found.system
    return None


def imaging_looking(resource: dict, knowledge: Knowledge, site: SiteCodes) -> tuple[str, str] | None:
    """(system, code) of an order that looks like imaging but matched nothing: a CPT code in the
    Radiology section, or a code in a system the site map uses."""
    for coding in fhir_data.codings(resource):
        if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
            continue
        system, code = coding.get("system"), coding["code"].strip()
        if knowledge.system_key(system) == "cpt" and code.isdigit() and \
                CPT_RADIOLOGY[0] <= int(code) <= CPT_RADIOLOGY[1]:
            return knowledge.system_uris["cpt"], code
        if isinstance(system, str) and system in site.systems:
            return system, code
    return None


def localise(body: dict, orders: dict[str, dict], knowledge: Knowledge, site: SiteCodes) -> None:
    """Put the site's code for the suggested study first on each suggested order (the standard code
    stays beside it), preferring a system the original order was coded in."""
    if not site.codes:
        return
    for card in body.get("cards", ()):
        for suggestion in card.get("suggestions", ()):
            for action in suggestion.get("actions", ()):
                resource = action.get("resource") or {}
                codings = resource.get("code", {}).get("coding", [])
                target = next((knowledge.procedure_for(c.get("system"), c.get("code")) for c in codings), None)
                if target is None:
                    continue
                original = orders.get(resource.get("id"), {})
                systems = [c.get("system") for c in fhir_data.codings(original) if isinstance(c, dict)]
                local = site.for_procedure(target.id, systems)
                if local:
                    resource["code"]["coding"] = [local.coding(), *codings]


class UnmatchedCounter:
    """Counts unmatched imaging-looking orders: a Prometheus counter, and a row per (system, code) in the
    database for the report, written off the request path."""

    def __init__(self, store: storage.Store):
        self.store = store
        self.writer = statement_writer(store, "unmatched order counts")
        self.tracked: set[tuple[str, str]] = set()
        self._upsert = store.insert(unmatched_orders)
        self._upsert = self._upsert.on_conflict_do_update(
            index_elements=["system", "code"],
            set_={"count": unmatched_orders.c["count"] + self._upsert.excluded["count"],
                  "last_seen": self._upsert.excluded.last_seen})

    def __call__(self, system: str, code: str) -> None:
        system, code = system[:ID_MAX], code[:ID_MAX]
        if (system, code) not in self.tracked:
            if len(self.tracked) >= MAX_TRACKED:
                system, code = OTHER
            else:
                self.tracked.add((system, code))
        UNMATCHED.labels(system, code).inc()
        self.writer.submit((self._upsert, [{"system": system, "code": code, "count": 1,
                                            "last_seen": storage.utcnow()}]))

    def flush(self) -> None:
        self.writer.flush()


def report(store: storage.Store, limit: int = 50) -> list[dict]:
    with store.read() as conn:
        rows = conn.execute(sa.select(unmatched_orders).order_by(
            unmatched_orders.c["count"].desc(), unmatched_orders.c.system, unmatched_orders.c.code).limit(limit))
        return [{"system": r.system, "code": r.code, "count": r.count, "last_seen": r.last_seen} for r in rows]


def format_report(rows: list[dict]) -> str:
    if not rows:
        return "Unmatched imaging-looking orders: none recorded."
    width = max(len(r["system"]) for r in rows)
    lines = ["Unmatched imaging-looking orders (map them in the site code map):",
             f"{'system'.ljust(width)}  {'code':<12} {'count':>7}"]
    lines += [f"{r['system'].ljust(width)}  {r['code']:<12} {r['count']:>7}" for r in rows]
    return "\n".join(lines)
