"""CDS Hooks service: ACR Appropriateness Criteria for imaging at initial staging of
asymptomatic pediatric acute lymphoblastic leukemia."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from flask import Flask
from flask_cors import CORS

from . import (api, auth, config, demo, explain, fhir_export, governance, guidance, jsonio, knowledge, observability,
               openapi, sitecodes, storage, suppression)
from .cli import report_command
from .fhir_data import FhirClient
from .fhir_servers import FhirServerPolicy
from .hooks import Limits
from .pipeline import HookHandler

log = logging.getLogger("cds_service")


@dataclass
class Runtime:
    """Everything a request needs, built once per process (before gunicorn forks)."""
    settings: config.Settings
    knowledge: knowledge.Knowledge
    handler: HookHandler
    store: storage.Store
    audit: storage.Journal
    authenticator: auth.Authenticator
    fhir_servers: FhirServerPolicy
    limits: Limits


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: `flask --app cds_service run`, `gunicorn "cds_service:create_app()"`.

    test_config overrides Settings fields by their lower-case names (e.g. {"env": "production"})."""
    settings = config.from_env(overrides=test_config)
    observability.configure_logging(settings.log_level)
    observability.set_id_hash_secret(settings.patient_hash_key
                                     or ("" if settings.production else suppression.DEVELOPMENT_KEY))
    kb = knowledge.load(settings.knowledge_dir or None).with_overrides(
        new_within_days=settings.new_diagnosis_days or None, pama_qcdsm=settings.pama_qcdsm or None)

    app = Flask(__name__, instance_relative_config=True)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = jsonio.OrjsonProvider(app)  # keys in the order they were built
    url = settings.database_url or storage.default_url(app.instance_path)
    store = storage.Store(url, settings.db_schema, settings.db_pool_size)
    journal = storage.Journal(store, settings.journal_dir or storage.journal_dir(url, app.instance_path),
                              settings.journal_max_mb << 20, kb.release.label)
    journal.replay_at_start()
    authenticator = auth.from_settings(settings.trusted_issuers, settings.allowed_algorithms, settings.jwt_leeway,
                                       development=not settings.production,
                                       claim_jti=storage.ReplayGuard(store.jti),
                                       max_lifetime=settings.jwt_max_lifetime, max_age=settings.jwks_max_age)
    suppressor = suppression.from_settings(store, settings)
    handler = build_handler(settings, kb, on_unmatched=sitecodes.UnmatchedCounter(store), suppressor=suppressor)
    handler.governance = governance.Governance(governance.switches_from_settings(settings, kb), store)
    journal.housekeeping = storage.Retention(store, settings.audit_retention_days,
                                             [suppressor.purge] if suppressor else []).maybe_purge
    fhir_servers = FhirServerPolicy(auth.parse_trusted_issuers(settings.trusted_issuers)[1], settings.production)
    limits = Limits.of(settings)
    app.extensions["cds"] = Runtime(settings, kb, handler, store, journal, authenticator,
                                    fhir_servers, limits)

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()] \
        or ([] if settings.production else ["*"])
    CORS(app, origins=origins, allow_headers=["Authorization", "Content-Type"],
         methods=["GET", "POST", "OPTIONS"], max_age=600, send_wildcard=origins == ["*"])
    api.register(app)
    guidance.register(app)
    fhir_export.register(app)
    handler.base_url = guidance.base_url(settings)  # the cards link to the guidance pages
    explain.register(app)
    demo.register(app)
    openapi.register(app)
    app.cli.add_command(report_command)
    log.info("knowledge loaded", extra={"fields": {"event": "knowledge", "release": kb.release.version,
                                                    "digest": kb.release.digest, "procedures": len(kb.procedures)}})
    if not settings.production:
        log.warning("development mode: hook calls without a token are accepted and the CDS Hooks Sandbox's "
                    "issuer is trusted; set CDS_ENV=production for a real EHR")
    elif not settings.patient_hash_key:
        log.warning("CDS_PATIENT_HASH_KEY is not set: the hashes of ids in the logs correlate within one process only")
    warm_up()
    return app


def build_handler(settings: config.Settings, kb: knowledge.Knowledge | None = None, **options: Any) -> HookHandler:
    """The hook handler for these settings: knowledge, site code map, FHIR client."""
    kb = kb or knowledge.load(settings.knowledge_dir or None).with_overrides(
        new_within_days=settings.new_diagnosis_days or None, pama_qcdsm=settings.pama_qcdsm or None)
    client = FhirClient(settings.fhir_connect_timeout, settings.fhir_read_timeout,
                        settings.fhir_max_pages, settings.fhir_page_size)
    return HookHandler(kb, client, settings.hook_deadline, on_fetch=observability.count_fetch,
                       site_codes=sitecodes.load(settings.site_codes, kb), **options)


def warm_up() -> None:
    """The first fhir.resources parse in a process builds the models (milliseconds): do it at start-up,
    before gunicorn forks, so that no hook call pays for it."""
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.servicerequest import ServiceRequest
    subject = {"reference": "Patient/warm-up"}
    Patient.model_validate({"resourceType": "Patient", "id": "warm-up", "birthDate": "2000-01-01"})
    Condition.model_validate({"resourceType": "Condition", "subject": subject, "onsetDateTime": "2000-01-01",
                              "code": {"coding": [{"system": "urn:warm-up", "code": "0"}]},
                              "clinicalStatus": {"coding": [{"code": "active"}]}})
    ServiceRequest.model_validate({"resourceType": "ServiceRequest", "status": "draft", "intent": "plan",
                                   "subject": subject, "reasonReference": [{"reference": "Condition/0"}],
                                   "code": {"coding": [{"system": "urn:warm-up", "code": "0"}]},
                                   "reasonCode": [{"coding": [{"system": "urn:warm-up", "code": "0"}]}]})
