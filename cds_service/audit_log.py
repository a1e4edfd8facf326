"""`cds-service audit verify`: the chain of the hook-call audit rows (storage/audit.py) checked for a
row changed, missing or out of order."""
from __future__ import annotations

from .storage import Database
from .storage.audit import verify


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
