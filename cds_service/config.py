"""Settings from CDS_* environment variables, with defaults that work on a fresh machine."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    env: str = "development"                 # CDS_ENV: development | production
    knowledge_dir: str = ""                  # CDS_KNOWLEDGE_DIR: default ./knowledge beside the package
    new_diagnosis_days: int = 0              # CDS_NEW_DIAGNOSIS_DAYS: 0 keeps knowledge/policies.toml
    pama_qcdsm: str = ""                     # CDS_PAMA_QCDSM: "" keeps knowledge/policies.toml
    max_body_bytes: int = 5 * 1024 * 1024    # CDS_MAX_BODY_BYTES
    max_orders: int = 100                    # CDS_MAX_ORDERS: draft orders in one hook call
    max_resources: int = 1000                # CDS_MAX_RESOURCES: entries of one prefetched search
    max_codings: int = 100                   # CDS_MAX_CODINGS: codings in one resource's coded elements
    max_call_codings: int = 10000            # CDS_MAX_CALL_CODINGS: codings in all resources of one call
    max_response_bytes: int = 2 * 1024 * 1024  # CDS_MAX_RESPONSE_BYTES: largest answer sent
    fhir_connect_timeout: float = 0.5        # CDS_FHIR_CONNECT_TIMEOUT (seconds)
    fhir_read_timeout: float = 1.0           # CDS_FHIR_READ_TIMEOUT (seconds)
    hook_deadline: float = 0.4               # CDS_HOOK_DEADLINE: budget for FHIR fetches per call
    fhir_max_pages: int = 5                  # CDS_FHIR_MAX_PAGES: Condition search pages followed
    fhir_page_size: int = 200                # CDS_FHIR_PAGE_SIZE: _count on Condition searches
    database_url: str = ""                   # CDS_DATABASE_URL: development default SQLite in the instance folder
    db_schema: str = ""                      # CDS_DB_SCHEMA: migrate at start | check (`cds-service migrate` ran);
                                             # default: migrate in development, check in production
    db_pool_size: int = 4                    # CDS_DB_POOL_SIZE: PostgreSQL connections per process, at most
    trusted_issuers: str = ""                # CDS_TRUSTED_ISSUERS: JSON {issuer: JWKS URL or file}
    allowed_algorithms: str = "ES384,RS384"  # CDS_ALLOWED_ALGORITHMS
    public_base_url: str = ""                # CDS_PUBLIC_BASE_URL: for the JWT audience behind a proxy
    cors_origins: str = ""                   # CDS_CORS_ORIGINS: comma-separated; "*" in development
    jwt_leeway: int = 60                     # CDS_JWT_LEEWAY (seconds)
    jwt_max_lifetime: int = 600              # CDS_JWT_MAX_LIFETIME: longest exp - iat accepted (seconds)
    jwks_max_age: int = 300                  # CDS_JWKS_MAX_AGE: keys are fetched again at least this often
    metrics_token: str = ""                  # CDS_METRICS_TOKEN: bearer token /metrics needs in production
    max_feedback_entries: int = 100          # CDS_MAX_FEEDBACK_ENTRIES: entries in one feedback post
    log_level: str = "INFO"                  # CDS_LOG_LEVEL
    site_codes: str = ""                     # CDS_SITE_CODES: CSV file mapping local order codes to procedures
    repeat_alert_minutes: int = 60           # CDS_REPEAT_ALERT_MINUTES: an overridden warning is not repeated; 0: off
    patient_hash_key: str = ""               # CDS_PATIENT_HASH_KEY: HMAC key of patient ids at rest and in logs
    journal_dir: str = ""                    # CDS_JOURNAL_DIR: the audit journal (default beside SQLite / instance)
    journal_max_mb: int = 1024               # CDS_JOURNAL_MAX_MB: its disk budget, all processes together
    audit_retention_days: int = 2190         # CDS_AUDIT_RETENTION_DAYS: audit rows and feedback kept (6 years)
    silent: str = ""                         # CDS_SILENT: all, or rule ids: decided and audited, not shown
    rules_off: str = ""                      # CDS_RULES_OFF: TOML file of the rules this site turned off
    canonical_base: str = ""                 # CDS_CANONICAL_BASE: base of the FHIR canonical URLs

    @property
    def production(self) -> bool:
        return self.env == "production"


def from_env(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f"CDS_{f.name.upper()}"
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        kind = type(f.default)
        try:
            values[f.name] = kind(raw) if kind is not str else raw
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected {kind.__name__}") from None
    settings = replace(Settings(), **values, **(overrides or {}))
    if settings.env not in ("development", "production"):
        raise ConfigError(f"CDS_ENV={settings.env!r}: expected development or production")
    if not settings.db_schema:
        settings = replace(settings, db_schema="check" if settings.production else "migrate")
    if settings.db_schema not in ("migrate", "check"):
        raise ConfigError(f"CDS_DB_SCHEMA={settings.db_schema!r}: expected migrate or check")
    if settings.production and not settings.database_url:
        raise ConfigError("CDS_DATABASE_URL is required in production (the service keeps its audit there; "
                          "no SQLite file inside a container is assumed)")
    if settings.production and not settings.public_base_url.startswith(("https://", "http://")):
        raise ConfigError("CDS_PUBLIC_BASE_URL is required in production: the URL EHRs call, which is the JWT "
                          "audience (never taken from the request's Host header)")
    for name in ("db_pool_size", "jwt_max_lifetime", "jwks_max_age", "max_feedback_entries",
                 "fhir_connect_timeout", "fhir_read_timeout", "hook_deadline", "max_body_bytes",
                 "fhir_max_pages", "fhir_page_size", "max_orders", "max_resources", "max_codings", "max_call_codings",
                 "max_response_bytes", "journal_max_mb", "audit_retention_days"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"CDS_{name.upper()} must be positive")
    if settings.repeat_alert_minutes < 0:
        raise ConfigError("CDS_REPEAT_ALERT_MINUTES must be 0 (off) or a positive number of minutes")
    return settings
