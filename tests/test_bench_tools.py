"""The benchmark's scaling shapes and its profile's attribution (bench/shapes.py, bench/profile.py)."""
from __future__ import annotations

import json
from datetime import date

import pytest

from bench import profile, shapes

TODAY = date.today()


@pytest.mark.parametrize("conditions, drafts", [(10, 100), (1000, 3)])
def test_a_scaling_shape_is_the_typical_call_grown_and_gets_the_warning(client, conditions, drafts):
    [shape] = [s for s in shapes.scaling(TODAY) if s.name == f"scale-{conditions}-{drafts}"]
    body = json.loads(shape.body)
    orders = [e["resource"] for e in body["context"]["draftOrders"]["entry"]]
    assert len(orders) == drafts and len({o["id"] for o in orders}) == drafts and orders[0]["id"] == "ct-chest-1"
    assert len(body["prefetch"]["conditions"]["entry"]) == conditions
    response = client.post(f"/cds-services/{shapes.SERVICE_ID}", data=shape.body, content_type="application/json")
    assert response.status_code == 200
    warnings = [c for c in response.get_json()["cards"] if c["indicator"] == "warning"]
    assert len(warnings) == 1


def test_the_first_twenty_draft_orders_are_those_of_the_long_record():
    assert [o["id"] for o in shapes.draft_orders(20, TODAY)] == [o["id"] for o in shapes.draft_orders(500, TODAY)[:20]]


def test_a_sample_counts_for_the_deepest_part_it_is_in():
    stack = ("process 1:\"gunicorn\";ThreadWorker.handle (gunicorn/workers/gthread.py:553);"
             "Flask.wsgi_app (flask/app.py:1511);call_service (cds_service/api.py:81);"
             "HookHandler.handle (cds_service/pipeline.py:60);patient_facts (cds_service/facts.py:260);"
             "BaseModel.model_validate (pydantic/main.py:792)")
    assert profile.part_of(stack) == "fhir.resources / pydantic validation"
    assert profile.part_of(stack.rsplit(";", 1)[0]).startswith("reading the record")
    assert profile.part_of("ThreadWorker.handle (gunicorn/workers/gthread.py:553)").startswith("gunicorn")
    assert profile.part_of("something (elsewhere.py:1)") == "other"
    # the knowledge is a package: its look-ups are a part of their own, not the caller's
    looked_up = stack.rsplit(";", 1)[0] + ";Knowledge.text_evidence (cds_service/knowledge/model.py:252)"
    assert profile.part_of(looked_up).startswith("code and text look-ups")
    assert profile.part_of("Suppressor.apply (cds_service/suppression.py:105)").startswith("repeat-alert")
