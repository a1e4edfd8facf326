"""The audit of hook calls: one row per call, one per issued card, written off the request path
through the journal (journal.py), each row chained to the one its process wrote before."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Database, chunks, utcnow
from .schema import ID_MAX, hook_calls, issued_cards

CHUNK_ROWS = 500  # rows read at once by verify


class CardRecord(Protocol):
    """What was shown, as the audit reads it (e.g. cards.IssuedCard): identifiers and the rule behind
    the card, no clinical text."""
    uuid: str
    order_id: str | None
    rule: str
    indicator: str
    rating: str | None
    suggestion_uuids: tuple[str, ...]


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def card_row(card: CardRecord | list) -> list:
    """A card as stored: [uuid, order id, rule, indicator, rating, suggestion uuids joined by spaces]."""
    if isinstance(card, (list, tuple)):
        return list(card)
    return [card.uuid[:ID_MAX], card.order_id[:ID_MAX] if card.order_id else None, card.rule[:ID_MAX],
            card.indicator[:16], card.rating[:64] if card.rating else None, " ".join(card.suggestion_uuids)]


def normalized(call: dict) -> dict:
    """A hook call as its row stores it, in JSON types (what the journal writes and the chain hashes)."""
    called_at = call.get("called_at") or utcnow()
    return {"called_at": called_at if isinstance(called_at, str) else iso(called_at),
            "service_id": call["service_id"][:ID_MAX], "hook_instance": call["hook_instance"][:ID_MAX],
            "status": int(call["status"]), "latency_ms": round(float(call["latency_ms"]), 3),
            "data_source": call["data_source"][:32],
            "knowledge_version": call["knowledge_version"][:64] if call.get("knowledge_version") else None,
            "issuer": (call.get("issuer") or "")[:ID_MAX], "cards": [card_row(c) for c in call["cards"]]}


def chain_hash(prev_hash: str, row: dict) -> str:
    """SHA-256 over the previous row's hash and this row's content (the knowledge release and the caller's
    issuer included, its cards in uuid order)."""
    content = [row["called_at"], row["service_id"], row["hook_instance"], row["status"], row["latency_ms"],
               row["data_source"], row["knowledge_version"], row["issuer"], sorted(row["cards"], key=lambda c: c[0])]
    return hashlib.sha256((prev_hash + json.dumps(content, separators=(",", ":"))).encode()).hexdigest()


class Audit:
    def __init__(self, db: Database):
        self.db = db
        self._insert_cards = db.insert(issued_cards).on_conflict_do_nothing(index_elements=["card_uuid"])

    def record_call(self, *, service_id: str, hook_instance: str, status: int, latency_ms: float,
                    data_source: str, cards: Iterable[CardRecord]) -> None:
        self.record_calls([{"service_id": service_id, "hook_instance": hook_instance, "status": status,
                            "latency_ms": latency_ms, "data_source": data_source, "cards": cards}])

    def record_calls(self, calls: list[dict]) -> None:
        """Audit rows for several hook calls (record_call's keyword arguments each, plus an optional
        `called_at`) in one transaction, unchained."""
        self.db.write(self.insert, [{"c": normalized(call)} for call in calls])

    def insert(self, conn: Connection, records: list[dict]) -> int:
        """Journal records of hook calls ({"c": normalized call, and "w", "n", "p", "h": writer, seq,
        previous and own hash}); a record whose (writer, seq) is stored already is skipped. Returns
        how many rows were inserted."""
        chained = [(r["w"], r["n"]) for r in records if r.get("w")]
        stored: set[tuple[str, int]] = set()
        for writer in {w for w, _ in chained}:
            seqs = [n for w, n in chained if w == writer]
            for part in chunks(seqs):
                stored |= {(writer, n) for n in conn.execute(
                    sa.select(hook_calls.c.seq).where(hook_calls.c.writer == writer, hook_calls.c.seq.in_(part)))
                    .scalars()}
        fresh = [r for r in records if not r.get("w") or (r["w"], r["n"]) not in stored]
        if not fresh:
            return 0
        rows = [{"called_at": datetime.fromisoformat(r["c"]["called_at"]), "service_id": r["c"]["service_id"],
                 "hook_instance": r["c"]["hook_instance"], "status": r["c"]["status"],
                 "latency_ms": r["c"]["latency_ms"], "data_source": r["c"]["data_source"],
                 "knowledge_version": r["c"].get("knowledge_version"), "issuer": r["c"].get("issuer") or "",
                 "writer": r.get("w"), "seq": r.get("n"), "prev_hash": r.get("p"), "row_hash": r.get("h")}
                for r in fresh]
        ids = conn.execute(hook_calls.insert().returning(hook_calls.c.id, sort_by_parameter_order=True),
                           rows).scalars().all()
        cards = [{"card_uuid": c[0], "call_id": call_id, "order_id": c[1], "rule": c[2], "indicator": c[3],
                  "rating": c[4], "suggestion_uuids": c[5]}
                 for call_id, r in zip(ids, fresh) for c in r["c"]["cards"]]
        for part in chunks(cards):
            conn.execute(self._insert_cards, part)
        return len(fresh)


def calls_with_cards(db: Database, where=None, order_by=(hook_calls.c.id,)) -> Iterator[tuple[Any, dict]]:
    """Hook-call rows (optionally filtered and ordered) with each one's content as the chain hashes it
    (normalized's shape, its cards included), read CHUNK_ROWS at a time."""
    query = sa.select(hook_calls).order_by(*order_by)
    if where is not None:
        query = query.where(where)
    with db.read() as conn:
        for part in conn.execution_options(yield_per=CHUNK_ROWS).execute(query).partitions():
            cards: dict[int, list] = {}
            for c in conn.execute(sa.select(issued_cards).where(issued_cards.c.call_id.in_([r.id for r in part]))):
                cards.setdefault(c.call_id, []).append([c.card_uuid, c.order_id, c.rule, c.indicator, c.rating,
                                                        c.suggestion_uuids])
            for r in part:
                yield r, {"called_at": iso(r.called_at), "service_id": r.service_id, "hook_instance": r.hook_instance,
                          "status": r.status, "latency_ms": r.latency_ms, "data_source": r.data_source,
                          "knowledge_version": r.knowledge_version, "issuer": r.issuer, "cards": cards.get(r.id, [])}


def verify(db: Database, limit: int = 20) -> tuple[int, list[str], dict[str, str]]:
    """Check each writer's chain of hook-call rows in the database: (rows checked, problems in the
    order of writer and sequence number, at most `limit`; the newest hash of each writer). A writer's
    first row left (older ones purged by retention) is taken as its start."""
    problems: list[str] = []
    heads: dict[str, str] = {}
    checked = 0
    writer, seq, prev, last_id = None, 0, "", 0
    for r, row in calls_with_cards(db, hook_calls.c.writer.is_not(None), (hook_calls.c.writer, hook_calls.c.seq)):
        checked += 1
        where = f"row id {r.id} (writer {r.writer}, seq {r.seq})"
        if r.writer != writer:
            writer, seq, prev, last_id = r.writer, r.seq, r.prev_hash, 0
        if r.seq != seq:
            problems.append(f"{where}: missing before it: seq {seq} to {r.seq - 1} of writer {r.writer}")
            prev = r.prev_hash
        elif r.prev_hash != prev:
            problems.append(f"{where}: reordered or the row before it changed: its previous hash is not "
                            "the hash of the row before it")
        if r.id < last_id:
            problems.append(f"{where}: reordered: written before the row that precedes it in its chain")
        if chain_hash(r.prev_hash or "", row) != r.row_hash:
            problems.append(f"{where}: altered: its content (or its cards) does not match its hash")
        seq, prev, last_id = r.seq + 1, r.row_hash, r.id
        heads[r.writer] = r.row_hash
        if len(problems) >= limit:
            break
    return checked, problems[:limit], heads
