"""Persistence: the audit of hook calls and issued cards, card feedback, and JWT `jti` replay protection.

SQLAlchemy Core on SQLite (the default: a file in the Flask instance folder) or PostgreSQL
(`postgresql+psycopg://...`). Only identifiers and coded values are stored, never clinical text or
names: a feedback `userComment` is recorded as present/absent, never its text.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
import queue
import re
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from .cards import IssuedCard

log = logging.getLogger("cds_service.storage")

ID_MAX = 255            # identifiers, codes and systems: longer values make a feedback entry malformed
SUGGESTIONS_MAX = 1024  # the accepted suggestion ids, sorted and joined by spaces
BUSY_TIMEOUT_MS = 5000
PURGE_EVERY_SECONDS = 60.0
BATCH_SECONDS = 0.05    # how long the audit writer gathers hook calls before one transaction
CHUNK = 500             # card ids per IN (...) lookup


class UTCDateTime(sa.TypeDecorator):
    """An aware UTC datetime: `timestamptz` on PostgreSQL, naive-UTC text on SQLite."""
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

metadata = sa.MetaData()

hook_calls = sa.Table(
    "cds_hook_calls", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("called_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("service_id", sa.String(ID_MAX), nullable=False),
    sa.Column("hook_instance", sa.String(ID_MAX), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("data_source", sa.String(32), nullable=False),
)

issued_cards = sa.Table(
    "cds_issued_cards", metadata,
    sa.Column("card_uuid", sa.String(ID_MAX), primary_key=True),
    sa.Column("call_id", BigId, sa.ForeignKey("cds_hook_calls.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("order_id", sa.String(ID_MAX)),
    sa.Column("rule", sa.String(ID_MAX), nullable=False),
    sa.Column("indicator", sa.String(16), nullable=False),
    sa.Column("rating", sa.String(64)),
    sa.Column("suggestion_uuids", sa.Text(), nullable=False, server_default=""),  # space-separated
)

feedback = sa.Table(
    "cds_feedback", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("service_id", sa.String(ID_MAX), nullable=False),
    sa.Column("card_uuid", sa.String(ID_MAX), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("outcome_at", UTCDateTime(), nullable=False),
    sa.Column("suggestions", sa.String(SUGGESTIONS_MAX), nullable=False),  # sorted, space-separated; "" if none
    sa.Column("matched", sa.Boolean(), nullable=False),                  # the card was issued by us
    sa.Column("suggestions_matched", sa.Boolean()),                      # accepted ids are the card's (None: n/a)
    sa.Column("reason_system", sa.String(ID_MAX)),
    sa.Column("reason_code", sa.String(ID_MAX)),
    sa.Column("reason_display", sa.String(ID_MAX)),
    sa.Column("has_comment", sa.Boolean(), nullable=False),              # the comment's text is never stored
    sa.UniqueConstraint("card_uuid", "outcome", "outcome_at", "suggestions", name="uq_cds_feedback_entry"),
)

jti_claims = sa.Table(
    "cds_jti_claims", metadata,
    sa.Column("issuer", sa.String(ID_MAX), primary_key=True),
    sa.Column("jti", sa.String(ID_MAX), primary_key=True),
    sa.Column("expires_at", sa.Float(), nullable=False, index=True),  # seconds since the epoch
)


# -- feedback entries ------------------------------------------------------------------------
RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 date-time (offset required, any fraction) as an aware UTC datetime, else None."""
    if not isinstance(value, str):
        return None
    m = RFC3339.fullmatch(value.strip())
    if not m:
        return None
    date, clock, fraction, offset = m.groups()
    text = f"{date}T{clock}.{(fraction or '0')[:6].ljust(6, '0')}{'+00:00' if offset in 'Zz' else offset}"
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except ValueError:  # e.g. month 13 or a leap second
        return None


def identifier(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() and len(value) <= ID_MAX else None


@dataclass(frozen=True)
class FeedbackEntry:
    card: str
    outcome: str
    outcome_at: datetime
    suggestions: str
    reason_system: str | None = None
    reason_code: str | None = None
    reason_display: str | None = None
    has_comment: bool = False

    @property
    def key(self) -> tuple:
        return self.card, self.outcome, self.outcome_at, self.suggestions


def parse_entry(entry: Any) -> FeedbackEntry | None:
    """One item of the spec's `feedback` array, or None when it is malformed."""
    if not isinstance(entry, dict):
        return None
    card, outcome = identifier(entry.get("card")), entry.get("outcome")
    outcome_at = parse_timestamp(entry.get("outcomeTimestamp"))
    if card is None or outcome not in ("accepted", "overridden") or outcome_at is None:
        return None
    if outcome == "accepted":  # cds-fb-2: acceptedSuggestions is required, each with an id
        accepted = entry.get("acceptedSuggestions")
        if not isinstance(accepted, list) or not accepted:
            return None
        ids = [identifier(s.get("id")) if isinstance(s, dict) else None for s in accepted]
        if None in ids:
            return None
        suggestions = " ".join(sorted(set(ids)))
        if len(suggestions) > SUGGESTIONS_MAX:
            return None
        return FeedbackEntry(card, outcome, outcome_at, suggestions)
    override = entry.get("overrideReason")
    if override is None:
        return FeedbackEntry(card, outcome, outcome_at, "")
    if not isinstance(override, dict):
        return None
    reason, comment = override.get("reason"), override.get("userComment")
    if comment is not None and not isinstance(comment, str):
        return None
    system = code = display = None
    if reason is not None:
        if not isinstance(reason, dict):
            return None
        code, system, display = identifier(reason.get("code")), reason.get("system"), reason.get("display")
        if code is None or (system is not None and identifier(system) is None) \
                or (display is not None and not isinstance(display, str)):
            return None
        display = display[:ID_MAX] if display else None
    return FeedbackEntry(card, outcome, outcome_at, "", system, code, display, bool(comment and comment.strip()))


def short_key(value: str) -> str:
    """A bounded-length key for a column: long values are replaced by their SHA-256."""
    return value if len(value) <= 200 else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def is_transient(exc: OperationalError) -> bool:
    """A deadlock, serialization failure or a locked SQLite file: worth retrying the transaction."""
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc.orig)


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- the store --------------------------------------------------------------------------------
class Store:
    def __init__(self, url: str):
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(self.dialect)
        if insert is None:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql+psycopg")
        self.engine = self._engine()
        self._purged_at = 0.0
        self._purge_lock = threading.Lock()
        self._insert_cards = insert(issued_cards).on_conflict_do_nothing(index_elements=["card_uuid"])
        self._insert_feedback = insert(feedback).on_conflict_do_nothing(
            index_elements=["card_uuid", "outcome", "outcome_at", "suggestions"]).returning(feedback.c.id)
        self._insert_jti = insert(jti_claims).on_conflict_do_nothing(index_elements=["issuer", "jti"]) \
            .returning(jti_claims.c.jti)
        self._create_tables()
        # Leave no pooled connection behind for a forking server (gunicorn --preload) to share.
        self.engine.dispose()
        ref = weakref.ref(self.engine)
        os.register_at_fork(after_in_child=lambda: (e := ref()) is not None and e.dispose(close=False))

    def _engine(self) -> Engine:
        if self.dialect == "sqlite":
            memory = self.url.database in (None, "", ":memory:")
            options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
            if memory:
                options["poolclass"] = sa.pool.StaticPool
            else:
                options.update(pool_size=8, max_overflow=16)
            engine = sa.create_engine(self.url, **options)

            @event.listens_for(engine, "connect")
            def on_connect(dbapi_connection, _record):
                dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if not memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute("PRAGMA foreign_keys = ON")
                cursor.close()

            @event.listens_for(engine, "begin")
            def on_begin(conn: Connection):
                # Writers take the lock up front: a deferred transaction that reads and then writes can
                # fail at once with SQLITE_BUSY (busy_timeout does not apply to a lock upgrade in WAL).
                conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("cds_read") else
                                     "BEGIN IMMEDIATE")
            return engine
        connect_args = {} if "connect_timeout" in self.url.query else {"connect_timeout": 5}
        return sa.create_engine(self.url, pool_pre_ping=True, pool_size=8, max_overflow=16,
                                connect_args=connect_args)

    def _create_tables(self) -> None:
        for attempt in range(3):  # several processes may start at once
            try:
                metadata.create_all(self.engine)
                return
            except (OperationalError, IntegrityError, sa.exc.ProgrammingError):
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _write(self, work, *args):
        """Run work(conn, *args) in one write transaction, retrying deadlocks and lock timeouts."""
        for attempt in range(4):
            try:
                with self.engine.begin() as conn:
                    return work(conn, *args)
            except OperationalError as exc:
                if attempt == 3 or not is_transient(exc):
                    raise
                time.sleep(0.02 * (attempt + 1))

    def _read(self):
        return self.engine.connect().execution_options(cds_read=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- hot path: one row per hook call, one per issued card ------------------------------------
    def record_call(self, *, service_id: str, hook_instance: str, status: int, latency_ms: float,
                    data_source: str, cards: Iterable[IssuedCard]) -> None:
        self.record_calls([{"service_id": service_id, "hook_instance": hook_instance, "status": status,
                            "latency_ms": latency_ms, "data_source": data_source, "cards": cards}])

    def record_calls(self, calls: list[dict]) -> None:
        """Audit rows for several hook calls (record_call's keyword arguments each, plus an optional
        `called_at`) in one transaction."""
        rows = [{"called_at": call.get("called_at") or utcnow(), "service_id": call["service_id"][:ID_MAX],
                 "hook_instance": call["hook_instance"][:ID_MAX], "status": call["status"],
                 "latency_ms": call["latency_ms"], "data_source": call["data_source"][:32]} for call in calls]
        with self.engine.begin() as conn:
            ids = conn.execute(hook_calls.insert().returning(hook_calls.c.id, sort_by_parameter_order=True),
                               rows).scalars().all()
            cards = [{"card_uuid": c.uuid[:ID_MAX], "call_id": call_id,
                      "order_id": c.order_id[:ID_MAX] if c.order_id else None, "rule": c.rule[:ID_MAX],
                      "indicator": c.indicator[:16], "rating": c.rating[:64] if c.rating else None,
                      "suggestion_uuids": " ".join(c.suggestion_uuids)}
                     for call_id, call in zip(ids, calls) for c in call["cards"]]
            if cards:
                conn.execute(self._insert_cards, cards)

    # -- feedback -------------------------------------------------------------------------------
    def record_feedback(self, service_id: str, entries: list) -> dict:
        """Store the valid entries of a `feedback` array; never raises for what the client sent.

        Returns {"stored", "duplicates", "unknown_cards", "rejected"}: stored + duplicates + rejected is
        len(entries); unknown_cards counts the valid entries (stored or not) about cards we never issued."""
        parsed = [parse_entry(e) for e in entries]
        valid = [p for p in parsed if p is not None]
        counts = {"stored": 0, "duplicates": 0, "unknown_cards": 0, "rejected": len(parsed) - len(valid)}
        unique = sorted({p.key: p for p in valid}.values(), key=lambda p: p.key)  # one lock order for all
        if not unique:
            counts["duplicates"] = len(valid)
            return counts
        stored, known = self._write(self._store_feedback, service_id[:ID_MAX], unique)
        counts["stored"] = stored
        counts["duplicates"] = len(valid) - stored
        counts["unknown_cards"] = sum(p.card not in known for p in valid)
        return counts

    def _store_feedback(self, conn: Connection, service_id: str, entries: list[FeedbackEntry]):
        known: dict[str, set[str]] = {}
        for part in chunks(sorted({e.card for e in entries}), CHUNK):
            for card, suggestions in conn.execute(
                    sa.select(issued_cards.c.card_uuid, issued_cards.c.suggestion_uuids)
                    .where(issued_cards.c.card_uuid.in_(part))):
                known[card] = set(suggestions.split())
        now = utcnow()
        rows = [{
            "received_at": now, "service_id": service_id, "card_uuid": e.card, "outcome": e.outcome,
            "outcome_at": e.outcome_at, "suggestions": e.suggestions, "matched": e.card in known,
            "suggestions_matched": (set(e.suggestions.split()) <= known[e.card])
            if e.suggestions and e.card in known else None,
            "reason_system": e.reason_system, "reason_code": e.reason_code, "reason_display": e.reason_display,
            "has_comment": e.has_comment} for e in entries]
        stored = 0
        for part in chunks(rows, CHUNK):
            stored += len(conn.execute(self._insert_feedback, part).all())
        return stored, known

    # -- JWT replay protection ----------------------------------------------------------------------
    def claim_jti(self, issuer: str, jti: str, expires_at: float) -> bool:
        """True the first time (issuer, jti) is seen, False for a replay. expires_at (epoch seconds) is
        when the row may be forgotten: the token's exp plus the leeway allowed on it."""
        self._maybe_purge()
        row = {"issuer": short_key(issuer), "jti": short_key(jti), "expires_at": float(expires_at)}
        try:
            return self._write(lambda conn: conn.execute(self._insert_jti, row).first() is not None)
        except IntegrityError:
            return False

    def purge_expired(self, now: float | None = None) -> int:
        """Forget the jti claims that have expired; returns how many."""
        now = time.time() if now is None else now
        return self._write(lambda conn: conn.execute(
            jti_claims.delete().where(jti_claims.c.expires_at < now)).rowcount)

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._purged_at < PURGE_EVERY_SECONDS or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._purged_at = now
            self.purge_expired()
        except SQLAlchemyError:
            log.warning("could not delete expired jti claims", exc_info=True)
        finally:
            self._purge_lock.release()

    # -- reading ----------------------------------------------------------------------------------
    def report(self) -> list[dict]:
        """Per rule and indicator: cards shown, distinct cards accepted and overridden, and the override
        reasons (code None: no reason given) with their counts. Feedback about cards we never issued is
        reported under the rule "(unknown card)"."""
        c, f = issued_cards, feedback
        rule = sa.func.coalesce(c.c.rule, "(unknown card)").label("rule")
        indicator = sa.func.coalesce(c.c.indicator, "-").label("indicator")
        joined = f.outerjoin(c, c.c.card_uuid == f.c.card_uuid)
        cards_counted = sa.func.count(sa.distinct(f.c.card_uuid))
        rows: dict[tuple[str, str], dict] = {}

        def row(key):
            return rows.setdefault(key, {"rule": key[0], "indicator": key[1], "shown": 0, "accepted": 0,
                                         "overridden": 0, "override_reasons": []})

        with self._read() as conn:
            for r, i, n in conn.execute(sa.select(c.c.rule, c.c.indicator, sa.func.count())
                                        .group_by(c.c.rule, c.c.indicator)):
                row((r, i))["shown"] = n
            for r, i, outcome, n in conn.execute(sa.select(rule, indicator, f.c.outcome, cards_counted)
                                                 .select_from(joined).group_by(rule, indicator, f.c.outcome)):
                row((r, i))[outcome] = n
            for r, i, system, code, display, n in conn.execute(
                    sa.select(rule, indicator, f.c.reason_system, f.c.reason_code,
                              sa.func.max(f.c.reason_display), cards_counted)
                    .select_from(joined).where(f.c.outcome == "overridden")
                    .group_by(rule, indicator, f.c.reason_system, f.c.reason_code)):
                row((r, i))["override_reasons"].append(
                    {"system": system, "code": code, "display": display, "count": n})
        for r in rows.values():
            r["override_reasons"].sort(key=lambda x: (-x["count"], x["code"] is None, x["code"] or ""))
        return sorted(rows.values(), key=lambda r: (r["rule"] == "(unknown card)", r["rule"], r["indicator"]))

    def ping(self) -> bool:
        try:
            with self._read() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError:
            log.warning("database unreachable", exc_info=True)
            return False


def format_report(rows: list[dict]) -> str:
    """The report as a plain text table."""
    header = ("rule", "indicator", "shown", "accepted", "overridden", "override reasons")
    lines = []
    for r in rows:
        reasons = ", ".join(f"{x['code'] or '(no reason)'} x{x['count']}" for x in r["override_reasons"])
        lines.append((r["rule"], r["indicator"], str(r["shown"]), str(r["accepted"]), str(r["overridden"]),
                      reasons or "-"))
    if not lines:
        return "No hook calls or feedback recorded yet."
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    numeric = {2, 3, 4}

    def fmt(line):
        return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
    total = [sum(r[k] for r in rows) for k in ("shown", "accepted", "overridden")]
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, lines), rule,
                      fmt(("total", "", *map(str, total), ""))])


def default_url(instance_path: str) -> str:
    """SQLite file cds.db in the (created if need be) Flask instance folder."""
    os.makedirs(instance_path, exist_ok=True)
    return sa.URL.create("sqlite", database=os.path.join(os.path.abspath(instance_path), "cds.db")) \
        .render_as_string()


class AuditWriter:
    """Writes the hook-call audit off the request path: a per-process queue drained in batches by a
    background thread, so a hook call never waits on the database (or on another worker's SQLite
    lock). Calls leave the queue only under one lock, and are written under it, so rows keep the
    order the calls were answered in. flush() writes everything queued before it returns; it runs
    at exit, and before feedback is matched to the cards issued."""

    def __init__(self, store: Store):
        self.store = store
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.writing = threading.Lock()
        self.started = threading.Lock()
        self.wake = threading.Event()
        self.pid = None
        atexit.register(self.flush)

    def submit(self, **call: Any) -> None:
        call.setdefault("called_at", utcnow())
        if self.pid != os.getpid():  # first call in this process (gunicorn forks after preload)
            with self.started:
                if self.pid != os.getpid():
                    self.pid = os.getpid()
                    self.writing = threading.Lock()  # a lock held at fork time stays held in the child
                    threading.Thread(target=self._run, name="cds-audit", daemon=True).start()
        self.queue.put(call)
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(BATCH_SECONDS)  # let a busy worker's calls gather into one transaction
            self.flush()

    def flush(self) -> None:
        with self.writing:
            calls = []
            while True:
                try:
                    calls.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if not calls:
                return
            try:
                self.store.record_calls(calls)
            except Exception:  # the audit must never break the ordering workflow; the loss is logged
                log.exception("audit write failed; %d hook call(s) not recorded", len(calls))
