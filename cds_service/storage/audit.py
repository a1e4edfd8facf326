"""The audit of hook calls: one row per call, one per issued card, written off the request path."""
from __future__ import annotations

from typing import Any, Iterable, Protocol

from .batch import BatchWriter
from .db import Database, utcnow
from .schema import ID_MAX, hook_calls, issued_cards



class CardRecord(Protocol):
    """What was shown, as the audit reads it (e.g. cards.IssuedCard): identifiers and the rule behind
    the card, no clinical text."""
    uuid: str
    order_id: str | None
    rule: str
    indicator: str
    rating: str | None
    suggestion_uuids: tuple[str, ...]


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
        `called_at`) in one transaction."""
        rows = [{"called_at": call.get("called_at") or utcnow(), "service_id": call["service_id"][:ID_MAX],
                 "hook_instance": call["hook_instance"][:ID_MAX], "status": call["status"],
                 "latency_ms": call["latency_ms"], "data_source": call["data_source"][:32],
                 "knowledge_version": call.get("knowledge_version"),
                 "issuer": (call.get("issuer") or "")[:ID_MAX]} for call in calls]
        with self.db.engine.begin() as conn:
            ids = conn.execute(hook_calls.insert().returning(hook_calls.c.id, sort_by_parameter_order=True),
                               rows).scalars().all()
            cards = [{"card_uuid": c.uuid[:ID_MAX], "call_id": call_id,
                      "order_id": c.order_id[:ID_MAX] if c.order_id else None, "rule": c.rule[:ID_MAX],
                      "indicator": c.indicator[:16], "rating": c.rating[:64] if c.rating else None,
                      "suggestion_uuids": " ".join(c.suggestion_uuids)}
                     for call_id, call in zip(ids, calls) for c in call["cards"]]
            if cards:
                conn.execute(self._insert_cards, cards)


class AuditWriter(BatchWriter):
    """The hook-call audit, written off the request path in batches (see batch.py), in the order
    the calls were answered. store: anything with record_calls(calls) (an Audit or a Store)."""

    def __init__(self, store, knowledge_version: str | None = None):
        super().__init__(store.record_calls, "audit")
        self.store = store
        self.knowledge_version = knowledge_version  # the release that answers, on every row

    def submit(self, **call: Any) -> None:
        call.setdefault("called_at", utcnow())
        call.setdefault("knowledge_version", self.knowledge_version)
        super().submit(call)
