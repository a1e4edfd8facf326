"""Command line: `cds-service report`, `cds-service migrate` (console script) and
`flask --app cds_service report`."""
from __future__ import annotations

import argparse
import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from . import fhir_export
from .storage import Database, Store, default_url, format_report, migrate

INSTANCE_DIR = "instance"


def database_url(explicit: str | None = None) -> str:
    """--database-url, else CDS_DATABASE_URL, else SQLite in ./instance."""
    return explicit or os.environ.get("CDS_DATABASE_URL") or default_url(INSTANCE_DIR)


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
        command.add_argument("--database-url", metavar="URL",
                             help="SQLAlchemy URL (default: $CDS_DATABASE_URL, else sqlite file ./instance/cds.db)")
    fhir_export.add_export_command(commands)
    args = parser.parse_args(argv)
    if hasattr(args, "run"):
        return args.run(args)
    if args.command == "report":
        store = Store(database_url(args.database_url))
        try:
            print(format_report(store.report()))
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
    click.echo(format_report(current_app.extensions["cds"].store.report()))


if __name__ == "__main__":
    sys.exit(main())
