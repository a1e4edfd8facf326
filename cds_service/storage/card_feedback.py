"""Card feedback: reading the spec's `feedback` entries and storing the valid ones, matched to the
cards issued. A `userComment` is recorded as present/absent, never its text."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Database, chunks, utcnow
from .schema import ID_MAX, SUGGESTIONS_MAX, feedback, hook_calls, issued_cards

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


def entry_to_json(entry: FeedbackEntry) -> list:
    """A valid entry in JSON types (the journal's form; the comment's text is not in it)."""
    return [entry.card, entry.outcome, entry.outcome_at.isoformat(), entry.suggestions, entry.reason_system,
            entry.reason_code, entry.reason_display, entry.has_comment]


def entry_from_json(values: list) -> FeedbackEntry:
    card, outcome, outcome_at, *rest = values
    return FeedbackEntry(card, outcome, datetime.fromisoformat(outcome_at), *rest)


class Feedback:
    def __init__(self, db: Database):
        self.db = db
        self._insert = db.insert(feedback).on_conflict_do_nothing(
            index_elements=["card_uuid", "outcome", "outcome_at", "suggestions"]).returning(feedback.c.id)

    def record_feedback(self, service_id: str, entries: list, issuer: str | None = None) -> dict:
        """Store the valid entries of a `feedback` array about cards this service issued (to `issuer`,
        the caller's JWT iss, "" for unsigned calls; None: to anyone); never raises for what the
        client sent. Entries about other cards are not stored: anyone could otherwise fill the table.

        Returns {"stored", "duplicates", "unknown_cards", "rejected"}, which add up to len(entries):
        unknown_cards counts the valid entries about cards not issued (to that issuer)."""
        counts, valid = self.parse(entries)
        unique = sorted({p.key: p for p in valid}.values(), key=lambda p: p.key)  # one lock order for all
        if not unique:
            return counts
        stored, known = self.db.write(self.store, service_id, unique, issuer)
        counts["stored"] = stored
        counts["unknown_cards"] = sum(p.card not in known for p in valid)
        counts["duplicates"] = len(valid) - stored - counts["unknown_cards"]
        return counts

    @staticmethod
    def parse(entries: list) -> tuple[dict, list[FeedbackEntry]]:
        """The counts record_feedback starts from, and the valid entries."""
        parsed = [parse_entry(e) for e in entries]
        valid = [p for p in parsed if p is not None]
        return {"stored": 0, "duplicates": 0, "unknown_cards": 0, "rejected": len(parsed) - len(valid)}, valid

    def store(self, conn: Connection, service_id: str, entries: list[FeedbackEntry], issuer: str | None = None,
              received_at=None):
        """Insert the valid entries about cards issued (to `issuer`, as in record_feedback; a duplicate is
        skipped); returns (stored, {known card: its suggestions})."""
        service_id = service_id[:ID_MAX]
        known: dict[str, set[str]] = {}
        for part in chunks(sorted({e.card for e in entries})):
            query = sa.select(issued_cards.c.card_uuid, issued_cards.c.suggestion_uuids) \
                .where(issued_cards.c.card_uuid.in_(part))
            if issuer is not None:
                query = query.join(hook_calls, hook_calls.c.id == issued_cards.c.call_id) \
                    .where(hook_calls.c.issuer == issuer[:ID_MAX])
            for card, suggestions in conn.execute(query):
                known[card] = set(suggestions.split())
        entries = [e for e in entries if e.card in known]
        if not entries:
            return 0, known
        now = received_at or utcnow()
        rows = [{
            "received_at": now, "service_id": service_id, "card_uuid": e.card, "outcome": e.outcome,
            "outcome_at": e.outcome_at, "suggestions": e.suggestions, "matched": e.card in known,
            "suggestions_matched": (set(e.suggestions.split()) <= known[e.card])
            if e.suggestions and e.card in known else None,
            "reason_system": e.reason_system, "reason_code": e.reason_code, "reason_display": e.reason_display,
            "has_comment": e.has_comment} for e in entries]
        stored = 0
        for part in chunks(rows):
            stored += len(conn.execute(self._insert, part).all())
        return stored, known
