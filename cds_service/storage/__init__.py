"""Persistence: the audit of hook calls and issued cards, card feedback, JWT `jti` replay protection
and the report, over one database. Each concern has its module; Store puts them on one engine.
Nothing here imports the clinical flow.

    schema         the tables              db         engine, transactions, default URL
    audit          hook-call audit rows and their chain     journal    the audit's local journal
    batch          writes off the request path, in batches (suppression, unmatched codes)
    card_feedback  feedback entries        jti        jti claims        reporting  the report
    retention      old rows deleted in the background
    migrate        versioned schema migrations (Alembic, migrations/versions/)
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import TimeoutError as WaitTimeout

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from . import migrate
from .audit import Audit, CardRecord
from .db import Database, background, default_url, utcnow
from .card_feedback import Feedback, FeedbackEntry, entry_from_json, parse_entry, parse_timestamp
from .jti import JtiClaims, ReplayGuard
from .journal import Journal
from .retention import Retention
from .migrate import SchemaError
from .reporting import format_report, report
from .schema import ID_MAX, SUGGESTIONS_MAX, feedback, hook_calls, issued_cards, jti_claims, metadata

log = logging.getLogger("cds_service.storage")

__all__ = ["Store", "Journal", "ReplayGuard", "Retention", "journal_dir", "CardRecord", "Database",
           "FeedbackEntry", "default_url", "format_report", "parse_entry", "parse_timestamp", "metadata",
           "hook_calls", "issued_cards", "feedback", "jti_claims", "ID_MAX", "SUGGESTIONS_MAX", "utcnow",
           "SchemaError"]


class Store(Database):
    """One database and what the service keeps in it.

    schema: "migrate" brings the schema to the newest revision, "check" raises SchemaError unless it is
    there (where `cds-service migrate` runs once per deploy), "none" leaves it alone. A database
    server that cannot be reached at start is not waited for (an instance restarted during an outage
    answers calls and journals their audit); a SQLite file that cannot be opened is an error."""

    def __init__(self, url: str, schema: str = "migrate", pool_size: int = 4):
        super().__init__(url, pool_size)
        if schema not in ("migrate", "check", "none"):
            raise ValueError(f"schema={schema!r}: expected migrate, check or none")
        try:
            if schema == "migrate":
                migrate.upgrade(self)
            elif schema == "check":
                migrate.check(self)
        except OperationalError:
            if self.dialect == "sqlite":
                raise
            log.warning("the database cannot be reached at start: its schema is not checked; hook calls are "
                        "answered and their audit is journaled until it is back")
        self.engine.dispose()  # no pooled connection left for a forking server (gunicorn --preload)
        self.audit = Audit(self)
        self.feedback = Feedback(self)
        self.jti = JtiClaims(self)

    def record_call(self, **call) -> None:
        self.audit.record_call(**call)

    def record_calls(self, calls: list[dict]) -> None:
        self.audit.record_calls(calls)

    def record_feedback(self, service_id: str, entries: list, issuer: str | None = None) -> dict:
        return self.feedback.record_feedback(service_id, entries, issuer)

    def claim_jti(self, issuer: str, jti: str, expires_at: float) -> bool:
        return self.jti.claim_jti(issuer, jti, expires_at)

    def purge_expired(self, now: float | None = None) -> int:
        return self.jti.purge_expired(now)

    def write_journal(self, records: list[dict]) -> None:
        """Journal lines (journal.py) in one transaction: hook calls first, then feedback, each stored once."""
        def work(conn):
            calls = [r for r in records if r["t"] == "call"]
            if calls:
                self.audit.insert(conn, calls)
            for r in records:
                if r["t"] == "feedback" and r["e"]:
                    entries = sorted({e.key: e for e in map(entry_from_json, r["e"])}.values(), key=lambda e: e.key)
                    self.feedback.store(conn, r["svc"], entries, r.get("iss"), parse_timestamp(r["at"]))
        self.write(work)

    def reachable(self, seconds: float = 1.0) -> bool:
        """Whether the database answers a query within `seconds`."""
        try:
            return background().submit(self.ping).result(seconds)
        except WaitTimeout:
            return False

    def report(self) -> list[dict]:
        return report(self)


def journal_dir(url: str, instance_path: str) -> str:
    """The default journal directory: beside a SQLite file (`cds.db.audit`), else in the instance folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return os.path.abspath(parsed.database) + ".audit"
    return os.path.join(os.path.abspath(instance_path), "audit-journal")
