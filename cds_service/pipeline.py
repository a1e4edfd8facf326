"""One hook call, in one direction: orders -> data -> facts -> decision -> cards."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date

from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from . import fhir_data
from .cards import Rendered, Renderer
from .decide import Order, decide
from .facts import order_indication, patient_facts
from .hooks import HookError, HookRequest
from .knowledge import Knowledge


@dataclass(frozen=True)
class Outcome:
    rendered: Rendered
    data_source: str   # "none" (nothing to rate), "prefetch" or "fhir"


def match(resource: dict, knowledge: Knowledge):
    """(procedure, system key) of the first coding of the order that the knowledge knows."""
    for coding in fhir_data.codings(resource):
        if isinstance(coding, dict):
            procedure = knowledge.procedure_for(coding.get("system"), coding.get("code"))
            if procedure:
                return procedure, knowledge.system_key(coding.get("system"))
    return None


class HookHandler:
    def __init__(self, knowledge: Knowledge, client: fhir_data.FhirClient, deadline_seconds: float = 0.4,
                 on_fetch=lambda kind, ok: None):
        self.knowledge = knowledge
        self.client = client
        self.deadline_seconds = deadline_seconds
        self.renderer = Renderer(knowledge)
        self.on_fetch = on_fetch
        self.today = date.today  # replaceable clock (tests pin it)
        self.base_url = lambda: ""  # the external base URL for the cards' links (set by create_app)

    def handle(self, request: HookRequest) -> Outcome:
        knowledge = self.knowledge
        started = time.monotonic()
        today = self.today()

        # 1. which selected orders are imaging studies the knowledge knows (validated)
        found_orders, raw_orders, systems = [], {}, {}
        for raw in request.orders:
            found = match(raw, knowledge)
            if not found or not fhir_data.about_patient(raw, request.patient_id):
                continue  # not a study the knowledge knows, or an order for another patient
            procedure, system = found
            try:
                model = ServiceRequest.model_validate(raw)
            except ValidationError as exc:
                raise HookError(400, f"selected ServiceRequest/{raw.get('id')} is {fhir_data.invalid(exc)}") from None
            if not model.id or model.id in raw_orders:
                continue  # an order without an id cannot be updated by a suggestion
            found_orders.append((model.id, procedure))
            raw_orders[model.id] = raw
            systems[model.id] = system
        if not found_orders:
            return Outcome(Rendered({"cards": []}, ()), "none")

        # 2. the patient's data
        data = fhir_data.load(request.prefetch, request.patient_id, request.fhir_server, request.access_token,
                              knowledge, self.client, started + self.deadline_seconds, self.on_fetch)

        # 3. facts, 4. decision, 5. cards
        facts = patient_facts(data.patient, data.conditions, knowledge, data.gaps, data.medications)
        by_reference = {f"Condition/{c.resource.get('id')}": c.resource for c in data.conditions}
        orders, reasons = [], []
        for oid, procedure in found_orders:
            indication = order_indication(raw_orders[oid], by_reference, knowledge, facts.birth_date)
            orders.append(Order(oid, procedure, indication.staging))
            reasons += indication.evidence
        decision = decide(facts, orders, reasons, knowledge, today)
        drafted = {found[0].id for found in (match(r, knowledge) for r in request.drafts) if found}
        rendered = self.renderer.render(decision, facts, raw_orders, systems, drafted,
                                        f"urn:uuid:{uuid.uuid4()}", self.base_url())
        return Outcome(rendered, "fhir" if data.fetched else "prefetch")
