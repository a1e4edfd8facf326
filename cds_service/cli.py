"""Command line: `cds-service report`, `cds-service migrate` (console script) and
`flask --app cds_service report`."""
from __future__ import annotations

import argparse
import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from . import audit_log, fhir_export, governance, review, sitecodes, suppression
from .storage import Database, Store, default_url, format_report, migrate

INSTANCE_DIR = "instance"


def database_url(explicit: str | None = None) -> str:
    """--database-url, else CDS_DATABASE_URL, else SQLite in ./instance."""
    return explicit or os.environ.get("CDS_DATABASE_URL") or default_url(INSTANCE_DIR)


def full_report(store: Store) -> str:
    """The report: cards per rule with their feedback, unmatched imaging orders, suppressed repeats, orders
    per day and the cards withheld from the EHR (silent mode, rules off)."""
    return "\n\n".join([format_report(store.report()), sitecodes.format_report(sitecodes.report(store)),
                        suppression.format_report(suppression.report(store)),
                        governance.format_report(governance.report(store))])


def database_option(command) -> None:
    command.add_argument("--database-url", metavar="URL",
                         help="SQLAlchemy URL (default: $CDS_DATABASE_URL, else sqlite file ./instance/cds.db)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cds-service", description="CDS Hooks service utilities.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    report = commands.add_parser(
        "report", help="cards shown, accepted and overridden per rule, with the override reasons",
        description="Per rule and indicator: cards shown, accepted, overridden, and override reasons.")
    upgrade = commands.add_parser(
        "migrate", help="bring the database schema to this version's revision (once per deploy)",
        description="Run the schema migrations not yet applied; safe to run again, and from several "
                    "instances at once.")
    for command in (report, upgrade):
        database_option(command)
    report.add_argument("--html", metavar="FILE", help="write the monitoring report with charts to FILE (one "
                                                       "self-contained HTML page that needs no network)")
    fhir_export.add_export_command(commands)
    review.add_commands(commands)
    audit_log.add_audit_command(commands, database_option)
    explain = commands.add_parser(
        "explain", help="why a hook request gets the cards it gets (or none), step by step",
        description="Run a hook request (a JSON file) through the decision and print each step.")
    explain.add_argument("request", metavar="REQUEST.json", help="a CDS Hooks order-select or order-sign request")
    explain.add_argument("--json", action="store_true", help="the explanation as JSON, for tools")
    try_ = commands.add_parser(
        "try", help="fire each demo patient with each imaging order at a running service, print a table",
        description="Fire each demo patient with each imaging order at a running service and print the cards "
                    "and ratings. Uses prefetch, so the service needs no FHIR server.")
    try_.add_argument("--url", default="http://127.0.0.1:5000/cds-services",
                      help="the service's discovery URL (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "explain":
        from .explain import run
        return run(args.request, args.json)
    if args.command == "try":
        from .demo import try_all
        return try_all(args.url)
    if hasattr(args, "run"):
        return args.run(args)
    if args.command == "report":
        store = Store(database_url(args.database_url))
        try:
            if args.html:
                from .monitoring import write
                write(store, args.html)
                print(args.html)
                return 0
            print(full_report(store))
        finally:
            store.close()
    elif args.command == "migrate":
        db = Database(database_url(args.database_url))
        try:
            print(f"database schema at revision {migrate.upgrade(db)} (newest: {migrate.head()})")
        finally:
            db.close()
    return 0


@click.command("report")
@with_appcontext
def report_command() -> None:
    """Cards shown, accepted and overridden per rule, with the override reasons."""
    click.echo(full_report(current_app.extensions["cds"].store))


if __name__ == "__main__":
    sys.exit(main())
