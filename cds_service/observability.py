"""Structured JSON logs and Prometheus metrics (multiprocess-safe under gunicorn)."""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

from . import jsonio

REQUESTS = Counter("cds_hook_requests_total", "Hook calls by service and HTTP status", ["service", "status"])
LATENCY = Histogram("cds_hook_latency_seconds", "Hook call latency by service and HTTP status",
                    ["service", "status"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
CARDS = Counter("cds_cards_total", "Cards issued by indicator and rule", ["indicator", "rule"])
FHIR_FETCHES = Counter("cds_fhir_fetches_total", "Reads and searches on the EHR's FHIR server",
                       ["resource", "outcome"])
PREFETCH = Counter("cds_prefetch_total", "Hook calls answered from prefetch (hit) or the FHIR server (miss)",
                   ["result"])


def count_fetch(resource: str, ok: bool) -> None:
    FHIR_FETCHES.labels(resource, "ok" if ok else "failed").inc()


def metrics_body() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


_id_key = secrets.token_bytes(32)
REFERENCE = re.compile(r"\b([A-Z][A-Za-z]{2,40})/([A-Za-z0-9\-.]{1,64})")


def set_id_hash_secret(secret: str) -> None:
    """Key the hashes of ids in logs; without one they correlate within this process only."""
    global _id_key
    _id_key = secret.encode() if secret else secrets.token_bytes(32)


def pseudonym(value: str) -> str:
    """A keyed hash of an id (a patient id, a resource id) for the logs: correlates, does not reveal."""
    return "h:" + hmac.new(_id_key, value.encode(), hashlib.sha256).hexdigest()[:16]


def scrub(text: str | None, *ids: str | None) -> str | None:
    """A message for the logs: every `Type/id` reference and each of `ids` replaced by its pseudonym."""
    if not text:
        return text
    text = REFERENCE.sub(lambda m: f"{m[1]}/{pseudonym(m[2])}", text)
    for value in sorted({i for i in ids if i and len(i) >= 3}, key=len, reverse=True):  # shorter: in references only
        text = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", pseudonym(value), text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Only fields passed in `extra={"fields": {...}}` are added:
    identifiers and counts, never patient names, birth dates or tokens."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return jsonio.dumps(entry).decode()


def configure_logging(level: str) -> None:
    logger = logging.getLogger("cds_service")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
