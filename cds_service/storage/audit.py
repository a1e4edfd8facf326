"""The audit of hook calls: one row per call, one per issued card, written off the request path."""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from typing import Any, Iterable, Protocol

from .db import Database, utcnow
from .schema import ID_MAX, hook_calls, issued_cards

log = logging.getLogger("cds_service.storage")

BATCH_SECONDS = 0.05    # how long the audit writer gathers hook calls before one transaction


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
                 "latency_ms": call["latency_ms"], "data_source": call["data_source"][:32]} for call in calls]
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


class AuditWriter:
    """Writes the hook-call audit off the request path: a per-process queue drained in batches by a
    background thread, so a hook call never waits on the database (or on another worker's SQLite
    lock). Calls leave the queue only under one lock, and are written under it, so rows keep the
    order the calls were answered in. flush() writes everything queued before it returns; it runs
    at exit, and before feedback is matched to the cards issued.

    store: anything with record_calls(calls) (an Audit or a Store)."""

    def __init__(self, store):
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
