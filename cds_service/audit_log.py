"""`cds-service audit verify`: the chain of the hook-call audit rows (storage/audit.py) checked for a
row changed, missing or out of order. `cds-service audit export`: the rows as FHIR R4 AuditEvents in
the shape of IHE Basic Audit Log Patterns (BALP), one JSON per line, for a hospital's audit repository.

Each call is an AuditEvent of type `rest` with action `E` (execute): the CDS client (the EHR) is the
Source Role ID and requestor (named by its JWT issuer when the call was signed), this service the
Destination Role ID, the hook call (its hookInstance) and each issued card entities; the knowledge
release that answered and the row's place in its chain are details. No patient is named: the audit
stores no patient id (the EHR's own audit log finds the patient by hookInstance)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from .storage import Database
from .storage.audit import calls_with_cards, verify
from .storage.schema import hook_calls

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
SYSTEM_OBJECT = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}


def add_audit_command(commands, database_option) -> None:
    """`cds-service audit verify` (cli.py's argparse subcommands); database_option(parser) adds --database-url."""
    parser = commands.add_parser("audit", help="check the audit trail's chain",
                                 description="Tamper evidence of the hook-call audit.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("verify", help="report the first altered, missing or reordered audit row",
                               description="Recompute each writer's chain of audit rows; exit status 1 when a "
                                           "row was altered, is missing or is out of order.")
    database_option(check)
    check.set_defaults(run=run_verify)
    export = actions.add_parser("export", help="the audit as FHIR AuditEvents (IHE BALP shape), one per line",
                                description="Write each hook call's audit row as a FHIR R4 AuditEvent, one JSON "
                                            "object per line (NDJSON), oldest first.")
    database_option(export)
    export.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    export.add_argument("--since", metavar="DATE", type=datetime.fromisoformat,
                        help="only calls at or after this ISO 8601 date-time (UTC unless it says otherwise)")
    export.add_argument("--base-url", metavar="URL", help="the service's external URL (default: "
                        "$CDS_PUBLIC_BASE_URL, else http://localhost:5000)")
    export.set_defaults(run=run_export)


def audit_event(r, row: dict, base_url: str) -> dict:
    """One hook call's audit row (and its cards) as an AuditEvent."""
    service = f"{base_url.rstrip('/')}/cds-services/{row['service_id']}"
    details = [{"type": "serviceId", "valueString": row["service_id"]},
               {"type": "dataSource", "valueString": row["data_source"]},
               {"type": "latencyMs", "valueString": str(row["latency_ms"])}]
    if row["knowledge_version"]:
        details.append({"type": "knowledgeVersion", "valueString": row["knowledge_version"]})
    if r.writer:
        details.append({"type": "auditChain", "valueString": f"writer={r.writer} seq={r.seq} hash={r.row_hash}"})
    entities = [{"what": {"identifier": {"type": {"text": "hookInstance"}, "value": row["hook_instance"]}},
                 "type": SYSTEM_OBJECT, "name": "CDS Hooks call", "detail": details}]
    for uuid, order_id, rule, indicator, rating, suggestions in row["cards"]:
        card = [{"type": "indicator", "valueString": indicator}]
        card += [{"type": name, "valueString": value} for name, value in
                 (("orderId", order_id), ("rating", rating), ("suggestions", suggestions)) if value]
        entities.append({"what": {"identifier": {"type": {"text": "card uuid"}, "value": uuid}},
                         "type": SYSTEM_OBJECT, "name": "card issued", "description": rule, "detail": card})
    return {
        "resourceType": "AuditEvent", "id": f"cds-hook-call-{r.id}",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "Restful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "operation",
                     "display": "operation"}],
        "action": "E", "recorded": row["called_at"],
        "outcome": "0" if row["status"] < 400 else "4" if row["status"] < 500 else "8",
        "outcomeDesc": f"HTTP {row['status']}",
        "agent": [{"type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
                   "who": {"identifier": {"value": row["issuer"]}, "display": "CDS client (EHR)"}
                   if row["issuer"] else {"display": "CDS client (EHR)"}, "requestor": True},
                  {"type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
                   "who": {"identifier": {"value": service}}, "requestor": False,
                   "network": {"address": service, "type": "5"}}],
        "source": {"observer": {"display": r.writer or "cds-service"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": entities,
    }


def run_export(args) -> int:
    from . import config
    from .cli import database_url
    base_url = args.base_url or config.from_env().public_base_url or "http://localhost:5000"
    since = args.since.replace(tzinfo=args.since.tzinfo or timezone.utc) if args.since else None
    db = Database(database_url(args.database_url))
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    count = 0
    try:
        where = hook_calls.c.called_at >= since if since else None
        for r, row in calls_with_cards(db, where):
            out.write(json.dumps(audit_event(r, row, base_url), separators=(",", ":")) + "\n")
            count += 1
    finally:
        db.close()
        if args.out:
            out.close()
    print(f"{count} AuditEvent(s) written{' to ' + args.out if args.out else ''}", file=sys.stderr)
    return 0


def run_verify(args) -> int:
    from .cli import database_url
    db = Database(database_url(args.database_url))
    try:
        checked, problems, heads = verify(db)
    finally:
        db.close()
    if problems:
        print(f"audit chain BROKEN: {len(problems)} problem(s) in {checked} chained row(s) read; the first:")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"audit chain intact: {checked} chained row(s) of {len(heads)} writer(s)")
    for writer, head in sorted(heads.items()):
        print(f"  {writer}  last hash {head}")
    return 0
