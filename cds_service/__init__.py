"""CDS Hooks service: ACR Appropriateness Criteria for imaging at initial staging of
asymptomatic pediatric acute lymphoblastic leukemia."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from flask import Flask

from . import api, config, knowledge
from .fhir_data import FhirClient
from .pipeline import HookHandler


@dataclass
class Runtime:
    """Everything a request needs, built once per process."""
    settings: config.Settings
    knowledge: knowledge.Knowledge
    handler: HookHandler


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: `flask --app cds_service run`, `gunicorn "cds_service:create_app()"`.

    test_config overrides Settings fields (by their lower-case names)."""
    settings = config.from_env(overrides=test_config)
    logging.basicConfig(level=settings.log_level)
    kb = knowledge.load(settings.knowledge_dir or None).with_overrides(
        new_within_days=settings.new_diagnosis_days or None, pama_qcdsm=settings.pama_qcdsm or None)

    app = Flask(__name__, instance_relative_config=True)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    client = FhirClient(settings.fhir_connect_timeout, settings.fhir_read_timeout,
                        settings.fhir_max_pages, settings.fhir_page_size)
    handler = HookHandler(kb, client, settings.hook_deadline)
    app.extensions["cds"] = Runtime(settings, kb, handler)
    api.register(app)
    return app
