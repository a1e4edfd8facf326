"""No repeat alerts: after a warning was overridden (CDS Hooks feedback), the same warning for the same
patient and order is not shown again within CDS_REPEAT_ALERT_MINUTES (default 60; 0 turns it off).
The PAMA rating is still sent on every call. Suppressed cards are counted (metrics and the report).

It holds across workers and instances: the state is in the database. Each worker keeps the recent
overrides in memory and reads the ones it has not seen at most every REFRESH_SECONDS, in a thread
that a hook call waits for READ_WAIT_SECONDS at most: an override posted to another worker or
instance silences the warning here within about a second (until then it may be shown once more,
which is the side of showing too much, not too little). No patient id is stored in clear: a
warning is known by an HMAC-SHA256, under CDS_PATIENT_HASH_KEY, of the caller's JWT issuer, the
patient id, the order id and the card's rule, and only feedback from the issuer the warning was
shown to overrides it: two EHRs' patients and orders with the same ids are never mixed. In
production the service needs that key to suppress at all (without it, every warning is shown, as
before).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable, Iterable

import sqlalchemy as sa
from flask import g, has_request_context
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from . import storage
from .cards import Rendered
from .storage.batch import statement_writer
from .storage.schema import ID_MAX, UTCDateTime

log = logging.getLogger("cds_service")
DEVELOPMENT_KEY = "development-only-patient-hash-key"  # never used in production
REPEATED = ("warning", "critical")
KEY_CHARS = 64  # hex HMAC-SHA256
REFRESH_SECONDS = 1.0  # how stale this worker's copy of the overrides may be
READ_WAIT_SECONDS = 0.05  # how long a hook call waits for that read; a slow database is not waited for
# Overrides are read again back to this far before the last read: another instance's clock may be a
# little behind, and its write may commit a moment after the time it stamped.
REREAD = timedelta(seconds=60)

SUPPRESSED = Counter("cds_suppressed_cards_total", "Warnings not shown again after an override, by rule", ["rule"])

# The warnings shown, by card uuid, until feedback comes (or they are old): the key of their warning.
shown_warnings = sa.Table(
    "cds_shown_warnings", storage.metadata,
    sa.Column("card_uuid", sa.String(ID_MAX), primary_key=True),
    sa.Column("warning_key", sa.String(KEY_CHARS), nullable=False),
    sa.Column("shown_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("issuer", sa.String(ID_MAX), nullable=False, server_default=""),  # whom it was shown to
)
# Overridden warnings: not shown again until overridden_at + the window.
overridden_warnings = sa.Table(
    "cds_overridden_warnings", storage.metadata,
    sa.Column("warning_key", sa.String(KEY_CHARS), primary_key=True),
    sa.Column("overridden_at", UTCDateTime(), nullable=False, index=True),
)
suppressed_cards = sa.Table(
    "cds_suppressed_cards", storage.metadata,
    sa.Column("rule", sa.String(ID_MAX), primary_key=True),
    sa.Column("count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("last_at", UTCDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Suppressed:
    """A warning left out of an answer: for `explain`."""
    order_id: str
    rule: str
    overridden_at: datetime
    until: datetime


class Suppressor:
    def __init__(self, store: storage.Store, key: str, minutes: int, now: Callable[[], datetime] = storage.utcnow):
        self.store = store
        self.key = key.encode()
        self.window = timedelta(minutes=minutes)
        self.now = now
        self.monotonic = time.monotonic  # replaceable clock of the refreshes (tests move it)
        self.overrides: dict[str, datetime] = {}  # warning key -> overridden at, within the window
        self.read_at: datetime | None = None      # the database time of the last read, None: never read
        self.next_read = float("-inf")            # monotonic time of the next read
        self.starting = threading.Lock()          # one read at a time
        self.last_read = threading.Event()        # set when the last read is over
        self.last_read.set()
        self.merging = threading.Lock()           # one change of `overrides` at a time
        self.readable = True
        self.writer = statement_writer(store, "repeat-alert suppression")
        insert = store.insert
        self._shown = insert(shown_warnings).on_conflict_do_nothing(index_elements=["card_uuid"])
        overridden = insert(overridden_warnings)
        self._overridden = overridden.on_conflict_do_update(
            index_elements=["warning_key"], set_={"overridden_at": overridden.excluded.overridden_at})
        counted = insert(suppressed_cards)
        self._count = counted.on_conflict_do_update(
            index_elements=["rule"], set_={"count": suppressed_cards.c["count"] + counted.excluded["count"],
                                           "last_at": counted.excluded.last_at})

    def warning_key(self, patient_id: str, order_id: str, rule: str, issuer: str = "") -> str:
        message = "\x1f".join((issuer, patient_id, order_id, rule)).encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    # -- the hook path ------------------------------------------------------------------------
    def apply(self, rendered: Rendered, patient_id: str, record: bool = True) -> tuple[Rendered, tuple[Suppressed, ...]]:
        """The answer less the warnings overridden within the window; the others are remembered by card
        uuid, so that feedback can find their patient and order."""
        warnings = [c for c in rendered.issued if c.indicator in REPEATED and c.order_id]
        if not warnings:
            return rendered, ()
        issuer = caller()
        keys = {c.uuid: self.warning_key(patient_id, c.order_id, c.rule, issuer) for c in warnings}
        now = self.now()
        self.refresh(now)
        recent = {k: at for k in keys.values() if (at := self.overrides.get(k)) and at > now - self.window}
        dropped = {c.uuid: c for c in warnings if keys[c.uuid] in recent}
        if record:
            shown = [{"card_uuid": u[:ID_MAX], "warning_key": k, "shown_at": now, "issuer": issuer[:ID_MAX]}
                     for u, k in keys.items() if u not in dropped]
            if shown:
                self.writer.submit((self._shown, shown))
            for card in dropped.values():
                SUPPRESSED.labels(card.rule).inc()
                self.writer.submit((self._count, [{"rule": card.rule[:ID_MAX], "count": 1, "last_at": now}]))
        suppressed = tuple(Suppressed(c.order_id, c.rule, recent[keys[c.uuid]], recent[keys[c.uuid]] + self.window)
                           for c in dropped.values())
        if not dropped:
            return rendered, ()
        body = {**rendered.body, "cards": [c for c in rendered.body["cards"] if c.get("uuid") not in dropped]}
        return replace(rendered, body=body, issued=tuple(c for c in rendered.issued if c.uuid not in dropped)), suppressed

    def refresh(self, now: datetime) -> None:
        """When the last read is REFRESH_SECONDS old, read the overrides not seen yet, in a thread of its
        own: the call that starts it waits at most READ_WAIT_SECONDS for it, the others not at all.
        When the database is slow the warnings not known to be overridden are shown; when it cannot
        be read, what is known stays (it was overridden)."""
        if self.monotonic() < self.next_read:
            return
        with self.starting:
            if self.monotonic() < self.next_read or not self.last_read.is_set():
                return  # read lately, or a read (of a slow database) is still under way
            self.next_read = self.monotonic() + REFRESH_SECONDS
            self.last_read = done = threading.Event()
            threading.Thread(target=self.read, args=(now, done), name="cds-repeat-alert-read", daemon=True).start()
        done.wait(READ_WAIT_SECONDS)

    def read(self, now: datetime, done: threading.Event) -> None:
        try:
            since = now - self.window if self.read_at is None else max(self.read_at - REREAD, now - self.window)
            with self.store.read() as conn:
                found = conn.execute(
                    sa.select(overridden_warnings.c.warning_key, overridden_warnings.c.overridden_at)
                    .where(overridden_warnings.c.overridden_at > since)).all()
            self.remember(dict(found), now)
            self.read_at, self.readable = now, True
        except SQLAlchemyError:
            if self.readable:  # once per outage, not once a second
                log.warning("repeat-alert suppression could not be read; warnings not known to be overridden "
                            "are shown", exc_info=True)
            self.readable = False
        finally:
            done.set()

    def remember(self, found: dict[str, datetime], now: datetime) -> None:
        """Add overrides to this worker's copy, forgetting those past the window (a new dict: readers
        in other threads see the old one or the new one, never half of it)."""
        start = now - self.window
        with self.merging:
            merged = {k: at for k, at in self.overrides.items() if at > start}
            for k, at in found.items():
                if at > start and at > merged.get(k, start):
                    merged[k] = at
            self.overrides = merged

    def flush(self) -> None:
        self.writer.flush()

    # -- feedback -------------------------------------------------------------------------------
    def on_feedback(self, entries: Iterable, issuer: str = "") -> int:
        """Remember the warnings that feedback from `issuer` overrode (shown to that issuer); returns how many."""
        cards = {e.card for e in filter(None, map(storage.parse_entry, entries)) if e.outcome == "overridden"}
        if not cards:
            return 0
        self.flush()  # the cards this process showed must be on record first
        now = self.now()
        overridden: dict[str, datetime] = {}

        def work(conn):
            found = conn.execute(sa.select(shown_warnings.c.warning_key)
                                 .where(shown_warnings.c.card_uuid.in_(cards),
                                        shown_warnings.c.issuer == issuer[:ID_MAX])).scalars().all()
            if found:
                conn.execute(self._overridden, [{"warning_key": k, "overridden_at": now} for k in set(found)])
                overridden.update(dict.fromkeys(found, now))
            # warnings shown long ago can no longer be overridden usefully: forget them
            conn.execute(shown_warnings.delete().where(shown_warnings.c.shown_at < now - max(self.window, timedelta(days=1))))
            return len(found)
        count = self.store.write(work)
        self.remember(overridden, now)  # this worker knows at once
        return count

    def purge(self, now: datetime) -> int:
        """Retention: the overrides past their window, the warnings shown before max(window, a day)."""
        def work(conn):
            gone = conn.execute(overridden_warnings.delete()
                                .where(overridden_warnings.c.overridden_at < now - self.window)).rowcount
            return gone + conn.execute(shown_warnings.delete().where(
                shown_warnings.c.shown_at < now - max(self.window, timedelta(days=1)))).rowcount
        return self.store.write(work)


def caller() -> str:
    """The JWT issuer of the hook call being answered ("" when unsigned, or outside a request)."""
    return (g.get("issuer") or "") if has_request_context() else ""


def from_settings(store: storage.Store, settings) -> Suppressor | None:
    if settings.repeat_alert_minutes == 0:
        return None
    key = settings.patient_hash_key
    if not key:
        if settings.production:
            log.warning("repeat-alert suppression is off: set CDS_PATIENT_HASH_KEY (a secret of this deployment) "
                        "to turn it on")
            return None
        key = DEVELOPMENT_KEY
    return Suppressor(store, key, settings.repeat_alert_minutes)


def report(store: storage.Store) -> list[dict]:
    with store.read() as conn:
        rows = conn.execute(sa.select(suppressed_cards).order_by(suppressed_cards.c["count"].desc(),
                                                                 suppressed_cards.c.rule))
        return [{"rule": r.rule, "count": r.count} for r in rows]


def format_report(rows: list[dict]) -> str:
    if not rows:
        return "Repeat warnings suppressed after an override: none."
    width = max(len(r["rule"]) for r in rows)
    return "\n".join(["Repeat warnings suppressed after an override:", f"{'rule'.ljust(width)}  {'count':>7}",
                      *(f"{r['rule'].ljust(width)}  {r['count']:>7}" for r in rows),
                      f"{'total'.ljust(width)}  {sum(r['count'] for r in rows):>7}"])
