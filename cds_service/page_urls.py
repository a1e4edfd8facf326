"""Where the guidance pages live (paths below the service's base URL); pure, shared by the cards
that link to the pages and the blueprint that serves them."""
from __future__ import annotations

INDEX = "/guidance/"
HAZARD_LOG = "/guidance/hazard-log"


def procedure(procedure_id: str) -> str:
    return f"/guidance/procedures/{procedure_id}"


def variant(variant_id: str) -> str:
    return f"/guidance/variants/{variant_id}"
