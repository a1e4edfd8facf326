"""One hook call, in one direction: orders -> data -> facts -> decision -> cards."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Mapping

from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from . import fhir_data, governance, sitecodes
from .cards import Rendered, Renderer
from .decide import Decision, Order, decide
from .facts import Indication, PatientFacts, order_indication, patient_facts
from .hooks import HookError, HookRequest
from .knowledge import Knowledge, Procedure
from .sitecodes import SiteCodes


@dataclass(frozen=True)
class Outcome:
    rendered: Rendered
    data_source: str   # "none" (nothing to rate), "prefetch" or "fhir"


@dataclass(frozen=True)
class Recognition:
    """How one order of the request was read: its procedure and the coding that matched, or why not."""
    order_id: str | None
    procedure: Procedure | None
    system: str | None        # the matched coding's system key (a site code: its URI)
    code: str | None
    note: str                 # "" when recognised, else why the order is not rated


@dataclass(frozen=True)
class Evaluation:
    """Every step of one hook call, for the answer and for `explain`."""
    recognised: tuple[Recognition, ...]
    facts: PatientFacts | None = None
    indications: Mapping[str, Indication] = field(default_factory=dict)
    decision: Decision | None = None
    outcome: Outcome = field(default_factory=lambda: Outcome(Rendered({"cards": []}, ()), "none"))
    suppressed: tuple = ()    # warnings left out: overridden for this patient and order within the window
    withheld: tuple = ()      # (card uuid, why, reason) of cards kept from the EHR: silent mode, rules off


def match(resource: dict, knowledge: Knowledge, site: SiteCodes = SiteCodes()):
    """(procedure, system key) of the order: the knowledge's codes first, then the site code map's."""
    return sitecodes.match(resource, knowledge, site)


def matched_code(resource: dict, knowledge: Knowledge, site: SiteCodes, system: str) -> str | None:
    for coding in fhir_data.codings(resource):
        if isinstance(coding, dict) and system in (knowledge.system_key(coding.get("system")), coding.get("system")):
            if knowledge.procedure_for(coding.get("system"), coding.get("code")) or \
                    site.lookup(coding.get("system"), coding.get("code")):
                return coding.get("code")
    return None


class HookHandler:
    def __init__(self, knowledge: Knowledge, client: fhir_data.FhirClient, deadline_seconds: float = 0.4,
                 on_fetch=lambda kind, ok: None, site_codes: SiteCodes = SiteCodes(),
                 on_unmatched=lambda system, code: None, suppressor=None):
        self.knowledge = knowledge
        self.client = client
        self.deadline_seconds = deadline_seconds
        self.renderer = Renderer(knowledge)
        self.on_fetch = on_fetch
        self.site_codes = site_codes
        self.on_unmatched = on_unmatched
        self.suppressor = suppressor  # suppression.Suppressor, or None: every warning is shown
        self.today = date.today  # replaceable clock (tests pin it)
        self.base_url = lambda: ""  # the external base URL for the cards' links (set by create_app)
        self.governance = None  # governance.Governance: silent mode, rules off, orders per day (set by create_app)

    def handle(self, request: HookRequest) -> Outcome:
        return self.evaluate(request).outcome

    def evaluate(self, request: HookRequest, record: bool = True) -> Evaluation:
        """The whole call, step by step; record=False (explain) counts nothing."""
        knowledge, site = self.knowledge, self.site_codes
        started = time.monotonic()
        today = self.today()

        # 1. which selected orders are imaging studies the knowledge knows (validated)
        found_orders, raw_orders, systems, recognised, unmatched_count = [], {}, {}, [], 0
        for raw in request.orders:
            found = match(raw, knowledge, site)
            oid = raw.get("id") if isinstance(raw.get("id"), str) else None
            if not found:
                unmatched = sitecodes.imaging_looking(raw, knowledge, site)
                if unmatched and record:
                    self.on_unmatched(*unmatched)
                unmatched_count += bool(unmatched)
                recognised.append(Recognition(oid, None, None, None, "no coding of the order is a study the "
                                              "knowledge or the site code map knows"))
                continue
            procedure, system = found
            code = matched_code(raw, knowledge, site, system)
            if not fhir_data.about_patient(raw, request.patient_id):
                recognised.append(Recognition(oid, procedure, system, code, "the order is for another patient"))
                continue
            try:
                model = ServiceRequest.model_validate(raw)
            except ValidationError as exc:
                raise HookError(400, f"selected ServiceRequest/{raw.get('id')} is {fhir_data.invalid(exc)}") from None
            if not model.id or model.id in raw_orders:
                recognised.append(Recognition(oid, procedure, system, code, "the order has no id, or the id "
                                              "of an order already read, so a suggestion could not update it"))
                continue  # an order without an id cannot be updated by a suggestion
            found_orders.append((model.id, procedure))
            raw_orders[model.id] = raw
            systems[model.id] = system
            recognised.append(Recognition(model.id, procedure, system, code, ""))
        if not found_orders:
            return self.governed(Evaluation(tuple(recognised)), unmatched_count, record)

        # 2. the patient's data
        data = fhir_data.load(request.prefetch, request.patient_id, request.fhir_server, request.access_token,
                              knowledge, self.client, started + self.deadline_seconds, self.on_fetch)

        # 3. facts, 4. decision, 5. cards
        facts = patient_facts(data.patient, data.conditions, knowledge, data.gaps, data.medications,
                              data.patient_resource, today)
        by_reference = {f"Condition/{c.resource.get('id')}": c.resource for c in data.conditions}
        orders, reasons, indications, unclassified = [], [], {}, []
        for oid, procedure in found_orders:
            indication = order_indication(raw_orders[oid], by_reference, knowledge, facts.birth_date)
            indications[oid] = indication
            orders.append(Order(oid, procedure, indication.staging))
            reasons += indication.evidence
            unclassified += indication.unclassified
        # the rest of the ordering basket: what its reasons and notes say about the patient counts too
        for other in request.basket:
            if other.get("id") not in raw_orders and fhir_data.about_patient(other, request.patient_id):
                indication = order_indication(other, by_reference, knowledge, facts.birth_date, details=False)
                reasons += indication.evidence
                unclassified += indication.unclassified
        if unclassified:
            facts = replace(facts, gaps=facts.gaps + tuple(unclassified))
        decision = decide(facts, orders, reasons, knowledge, today)
        drafted = {found[0].id for found in (match(r, knowledge, site) for r in request.drafts) if found}
        rendered = self.renderer.render(decision, facts, raw_orders, systems, drafted,
                                        f"urn:uuid:{uuid.uuid4()}", self.base_url())
        sitecodes.localise(rendered.body, raw_orders, knowledge, site)
        suppressed = ()
        if self.suppressor:
            rendered, suppressed = self.suppressor.apply(rendered, request.patient_id, record)
        outcome = Outcome(rendered, "fhir" if data.fetched else "prefetch")
        return self.governed(Evaluation(tuple(recognised), facts, indications, decision, outcome, suppressed),
                             unmatched_count, record)

    def governed(self, evaluation: Evaluation, unmatched: int, record: bool) -> Evaluation:
        """The answer less what silent mode and the site's rule switches keep from the EHR; the orders'
        outcomes counted for the report."""
        if self.governance is None:
            return evaluation
        if record:
            self.governance.count(governance.order_outcomes(evaluation, unmatched))
        rendered, withheld = self.governance.apply(evaluation.outcome.rendered, record)
        return replace(evaluation, outcome=replace(evaluation.outcome, rendered=rendered), withheld=withheld)
