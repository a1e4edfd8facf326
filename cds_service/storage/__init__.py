"""Persistence: the audit of hook calls and issued cards, card feedback, JWT `jti` replay protection
and the report, over one database. Each concern has its module; Store puts them on one engine.
Nothing here imports the clinical flow.

    schema         the tables              db         engine, transactions, default URL
    audit          hook-call audit and its writer
    batch          writes off the request path, in batches (audit, suppression, unmatched codes)
    card_feedback  feedback entries        jti        jti claims        reporting  the report
    migrate        versioned schema migrations (Alembic, migrations/versions/)
"""
from __future__ import annotations

from . import migrate
from .audit import Audit, AuditWriter, CardRecord
from .db import Database, default_url, utcnow
from .card_feedback import Feedback, FeedbackEntry, parse_entry, parse_timestamp
from .jti import JtiClaims
from .migrate import SchemaError
from .reporting import format_report, report
from .schema import ID_MAX, SUGGESTIONS_MAX, feedback, hook_calls, issued_cards, jti_claims, metadata

__all__ = ["Store", "AuditWriter", "CardRecord", "Database", "FeedbackEntry", "default_url", "format_report",
           "parse_entry", "parse_timestamp", "metadata", "hook_calls", "issued_cards", "feedback",
           "jti_claims", "ID_MAX", "SUGGESTIONS_MAX", "utcnow", "SchemaError"]


class Store(Database):
    """One database and what the service keeps in it.

    schema: "migrate" brings the schema to the newest revision, "check" raises SchemaError unless it is
    there (where `cds-service migrate` runs once per deploy), "none" leaves it alone."""

    def __init__(self, url: str, schema: str = "migrate", pool_size: int = 4):
        super().__init__(url, pool_size)
        if schema == "migrate":
            migrate.upgrade(self)
        elif schema == "check":
            migrate.check(self)
        elif schema != "none":
            raise ValueError(f"schema={schema!r}: expected migrate, check or none")
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

    def report(self) -> list[dict]:
        return report(self)
