"""How many realistic in-scope children still get their rating under the closed world (sensitivity),
and how many out-of-scope children are handled safely, on bench/corpus.py through the real API.

    python -m bench.sensitivity
"""
from __future__ import annotations

import logging
import sys
import tempfile
from datetime import date

from cds_service import create_app

from .corpus import IN_SCOPE, OUT_OF_SCOPE

SERVICES = {"order-select": "acr-all-staging-order-select", "order-sign": "acr-all-staging-order-sign"}
RATED = {"not-appropriate", "appropriate"}


def outcome(client, body: dict) -> tuple[set[str], list[dict]]:
    """(the PAMA ratings given, the cards) of one call."""
    response = client.post(f"/cds-services/{SERVICES[body['hook']]}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    ratings = {ext["valueCodeableConcept"]["coding"][0]["code"]
               for action in answer.get("systemActions", []) for ext in action["resource"].get("extension", [])
               if ext.get("url") == "http://fhir.org/argonaut/Extension/pama-rating"}
    return ratings, answer["cards"]


def measure(client, today: date) -> dict[str, list[str]]:
    """The names of the cases in each class: in scope and rated, in scope but silenced, out of scope
    handled safely, out of scope but warned or rated."""
    result: dict[str, list[str]] = {"rated": [], "silenced": [], "safe": [], "warned": []}
    for name, case in IN_SCOPE.items():
        ratings, _ = outcome(client, case(today))
        result["rated" if ratings & RATED else "silenced"].append(name)
    for name, case in OUT_OF_SCOPE.items():
        ratings, cards = outcome(client, case(today))
        warned = ratings & RATED or any(c["indicator"] == "warning" for c in cards)
        result["warned" if warned else "safe"].append(name)
    return result


def main() -> int:
    logging.getLogger("cds_service").setLevel(logging.ERROR)  # one log line per call is not the point here
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"database_url": f"sqlite:///{tmp}/cds.db"})
        result = measure(app.test_client(), date.today())
    rated, total = len(result["rated"]), len(IN_SCOPE)
    safe, out = len(result["safe"]), len(OUT_OF_SCOPE)
    print(f"in scope, rated (sensitivity): {rated} of {total} ({100 * rated / total:.0f}%)")
    print(f"out of scope, handled safely:  {safe} of {out} ({100 * safe / out:.0f}%)")
    for label, key in (("silenced in scope", "silenced"), ("warned out of scope", "warned")):
        if result[key]:
            print(f"{label}: {', '.join(result[key])}")
    return 0 if rated == total and safe == out else 1


if __name__ == "__main__":
    sys.exit(main())
