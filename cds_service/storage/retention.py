"""Retention: rows older than their table's period are deleted in the background, by each process's
journal thread, at most every PURGE_SECONDS (deletes are idempotent: instances purging together do
no harm). Periods: audit rows (hook calls, their cards) and feedback CDS_AUDIT_RETENTION_DAYS (default
6 years, what hospitals keep HIPAA documentation for); jti claims until their token's expiry; the
repeat-alert suppression rows for their window (suppression.py)."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from .db import Database, utcnow
from .schema import feedback, hook_calls, issued_cards, jti_claims

log = logging.getLogger("cds_service.storage")

PURGE_SECONDS = 3600.0
FIRST_PURGE_SECONDS = 60.0  # after start: not while a rolling deploy starts every instance
ROWS_PER_DELETE = 10_000    # one transaction each: a first purge of years of rows does not lock for long


class Retention:
    def __init__(self, db: Database, audit_days: int, others: Iterable[Callable[[datetime], int]] = ()):
        """others: more purges (now -> rows deleted), e.g. the suppression rows past their window."""
        self.db = db
        self.audit = timedelta(days=audit_days)
        self.others = list(others)
        self.next_at = time.monotonic() + FIRST_PURGE_SECONDS

    def purge(self, now: datetime | None = None) -> dict[str, int]:
        """Delete what is past its period; returns rows deleted per table."""
        now = now or utcnow()
        cutoff = now - self.audit
        deleted = {"cds_hook_calls": self._in_chunks(hook_calls, hook_calls.c.called_at < cutoff, cascade=True),
                   "cds_feedback": self._in_chunks(feedback, feedback.c.received_at < cutoff),
                   "cds_jti_claims": self.db.write(lambda conn: conn.execute(
                       jti_claims.delete().where(jti_claims.c.expires_at < now.timestamp())).rowcount)}
        deleted["other"] = sum(purge(now) for purge in self.others)
        return deleted

    def _in_chunks(self, table: sa.Table, old, cascade: bool = False) -> int:
        total = 0
        while True:
            def work(conn):
                ids = conn.execute(sa.select(table.c.id).where(old).order_by(table.c.id)
                                   .limit(ROWS_PER_DELETE)).scalars().all()
                if ids and cascade:  # the cards of the calls (SQLite enforces ON DELETE CASCADE only when asked)
                    conn.execute(issued_cards.delete().where(issued_cards.c.call_id.in_(ids)))
                if ids:
                    conn.execute(table.delete().where(table.c.id.in_(ids)))
                return len(ids)
            n = self.db.write(work)
            total += n
            if n < ROWS_PER_DELETE:
                return total

    def maybe_purge(self) -> None:
        """The background purge: every PURGE_SECONDS; a database that is down is tried next time."""
        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + PURGE_SECONDS
        try:
            deleted = self.purge()
        except SQLAlchemyError:
            log.warning("retention: old rows could not be deleted; tried again in an hour")
            return
        if any(deleted.values()):
            log.info("retention: old rows deleted", extra={"fields": {"event": "retention", **deleted}})
