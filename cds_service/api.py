"""Flask routes only: translate HTTP to calls and back. Every answer is JSON."""
from __future__ import annotations

import hmac
import logging
import time
from collections import Counter

from flask import Blueprint, Flask, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from . import hooks, jsonio, observability
from .auth import AuthError
from .fhir_data import DataUnavailable
from .fhir_servers import Refused
from .hooks import HookError, operation_outcome

log = logging.getLogger("cds_service")
bp = Blueprint("cds", __name__)

JSON_TYPES = ("application/json", "application/fhir+json")
AUTHENTICATED = {"cds.discovery", "cds.call_service", "cds.feedback"}
LOG_TEXT_MAX = 300  # characters of an error message in a log line (the rest may be a caller's text)
REFUSED = "authentication failed"  # all a refused caller is told in production (the reason is logged)
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "Cross-Origin-Resource-Policy": "same-site"}
HSTS = "max-age=31536000; includeSubDomains"
CSP_JSON = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
CSP_HTML = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; " \
           "base-uri 'none'; form-action 'none'"  # the guidance pages: their own inline style, no script


def runtime():
    return current_app.extensions["cds"]


def outcome_response(status: int, message: str, code: str = "invalid") -> Response:
    response = current_app.json.response(operation_outcome(message, code))
    response.status_code = status
    return response


def read_json() -> object:
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise HookError(415, f"Content-Type must be application/json, not '{mimetype or 'none'}'")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None:  # chunked: read at most one byte more than the limit
        body = b""
        while len(body) <= limit and (part := request.stream.read(limit + 1 - len(body))):
            body += part
        if len(body) > limit:
            raise HookError(413, f"the request body is larger than {limit} bytes (CDS_MAX_BODY_BYTES)",
                            "too-costly")
    else:
        body = request.get_data(cache=False)
    try:
        return jsonio.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HookError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HookError(400, "the request body is nested too deeply") from None


def find_service(service_id: str) -> hooks.Service:
    service = hooks.SERVICES.get(service_id)
    if service is None:
        raise HookError(404, f"no CDS service with id '{service_id}'", "not-found")
    return service


def check_fhir_server(hook_request: hooks.HookRequest) -> bool:
    """Before any request is made (the EHR's token goes only where this caller may send it): whether the
    request's fhirServer is one configured for the caller; HookError 400/403 when it may not be named."""
    if not hook_request.fhir_server:
        return False
    try:
        return runtime().fhir_servers.check(hook_request.fhir_server, g.get("issuer"))
    except Refused as exc:
        raise HookError(exc.status, exc.message, "forbidden" if exc.status == 403 else "invalid") from None


@bp.before_request
def authenticate():
    g.started = time.perf_counter()
    if request.method == "OPTIONS" or request.endpoint not in AUTHENTICATED:
        return None
    rt = runtime()
    header = request.headers.get("Authorization")
    if not rt.settings.production and not header:
        return None  # development: calls without a token are accepted (warned at start-up)
    base = rt.settings.public_base_url.rstrip("/")  # always set in production (config.py)
    audience = base + request.path if base else request.base_url
    try:
        g.issuer = rt.authenticator.verify(header, audience)["iss"]
    except AuthError as exc:  # a token that is present must be valid, in development too
        g.error = f"{REFUSED}: {exc.message}"  # logged; in production the caller is told no more than REFUSED
        response = outcome_response(401, REFUSED if rt.settings.production else g.error, "security")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


@bp.get("/cds-services")
def discovery():
    return {"services": [s.discovery(runtime().knowledge.release) for s in hooks.SERVICES.values()]}


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    service = find_service(service_id)
    rt = runtime()
    hook_request = hooks.parse(read_json(), service, require_https=rt.settings.production, limits=rt.limits)
    g.hook_instance, g.patient_id = hook_request.hook_instance, hook_request.patient_id
    configured = check_fhir_server(hook_request)
    try:
        outcome = rt.handler.handle(hook_request)
    except DataUnavailable as exc:
        # What another host did (refused, timed out, answered 404) is not told: it would map its network.
        told = f"{exc}: {exc.reason}" if exc.reason and configured else str(exc)
        g.fetch_reason = exc.reason  # for the log line
        raise HookError(412, f"required FHIR data could not be obtained: {told}", "not-found") from None
    response = current_app.json.response(outcome.rendered.body)
    if response.content_length > rt.settings.max_response_bytes:
        raise HookError(413, f"the answer would be {response.content_length} bytes, more than "
                             f"{rt.settings.max_response_bytes} (CDS_MAX_RESPONSE_BYTES): send fewer orders",
                        "too-costly")
    g.issued, g.data_source = outcome.rendered.issued, outcome.data_source
    return response


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str):
    find_service(service_id)
    body = read_json()
    entries = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise HookError(400, "'feedback' must be an array of feedback entries")
    rt = runtime()
    if len(entries) > rt.settings.max_feedback_entries:
        raise HookError(413, f"{len(entries)} feedback entries in one post, more than "
                             f"{rt.settings.max_feedback_entries} (CDS_MAX_FEEDBACK_ENTRIES)", "too-costly")
    # stored only about cards issued to this caller; in the journal while the database is unavailable
    counts = rt.audit.store_feedback(service_id, entries, g.get("issuer") or "")
    if rt.handler.suppressor:  # overridden warnings are not repeated (see suppression.py)
        try:
            rt.handler.suppressor.on_feedback(entries, g.get("issuer") or "")
        except SQLAlchemyError:  # the feedback is recorded; the warning will simply be shown again
            log.warning("an overridden warning could not be recorded for repeat-alert suppression", exc_info=True)
    log.info("feedback", extra={"fields": {"event": "feedback", "service": service_id, **counts}})
    return {}


@bp.get("/health")
def health():
    return {"status": "ok"}


@bp.get("/ready")
def ready():
    """Ready while the process can answer hook calls. An unreachable database does not make it unready:
    calls are answered without it (README, "Security and reliability"), and a probe failing on every
    instance at once would take the whole service out of the load balancer."""
    rt = runtime()
    return {"status": "ready", "procedures": len(rt.knowledge.procedures),
            "database": "up" if rt.store.reachable() else "unreachable",
            "journal_bytes": rt.audit.used, "journal_budget_bytes": rt.audit.max_bytes}


@bp.get("/metrics")
def metrics():
    """Open in development; in production only with `Authorization: Bearer <CDS_METRICS_TOKEN>`
    (no token configured: 404), since the per-rule counters tell in real time what is being ordered."""
    settings = runtime().settings
    if settings.production:
        if not settings.metrics_token:
            raise HookError(404, "metrics are off: set CDS_METRICS_TOKEN to scrape them", "not-found")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.metrics_token}".encode()):
            raise HookError(401, REFUSED, "security", {"WWW-Authenticate": "Bearer"})
    body, content_type = observability.metrics_body()
    return Response(body, content_type=content_type)


@bp.after_request
def record_hook_call(response: Response) -> Response:
    """One JSON log line, metrics and an audit row per hook call, whatever its outcome."""
    if request.endpoint != "cds.call_service" or request.method != "POST":
        return response
    latency = time.perf_counter() - g.get("started", time.perf_counter())
    service_id = (request.view_args or {}).get("service_id")
    if service_id not in hooks.SERVICES:
        service_id = "unknown"
    status = response.status_code
    issued = g.get("issued", ())
    source = g.get("data_source", "none")
    observability.REQUESTS.labels(service_id, status).inc()
    observability.LATENCY.labels(service_id, status).observe(latency)
    for card in issued:
        observability.CARDS.labels(card.indicator, card.rule).inc()
    if source in ("prefetch", "fhir"):
        observability.PREFETCH.labels("hit" if source == "prefetch" else "miss").inc()
    patient_id = g.get("patient_id")
    fields = {"event": "hook_call", "service": service_id, "hookInstance": g.get("hook_instance"),
              "patient": observability.pseudonym(patient_id) if patient_id else None,
              "status": status, "latency_ms": round(latency * 1000, 3), "data_source": source,
              "cards": dict(Counter(card.indicator for card in issued))}
    if status >= 400:  # no patient or resource id reaches the log: they are replaced by keyed hashes
        fields["error"] = observability.scrub((g.get("error") or "")[:LOG_TEXT_MAX], patient_id)
        if g.get("fetch_reason"):
            fields["fetch_reason"] = observability.scrub(g.fetch_reason, patient_id)
    log.info("hook call", extra={"fields": fields})
    # A refused call (401) is counted (cds_hook_requests_total) and logged, not written to the audit:
    # anyone can send them, as fast as they like.
    if service_id != "unknown" and status != 401:
        runtime().audit.submit(service_id=service_id, hook_instance=g.get("hook_instance") or "", status=status,
                               latency_ms=latency * 1000, data_source=source, cards=issued,
                               issuer=g.get("issuer") or "")
    return response


def security_headers(response: Response) -> Response:
    """On every answer: no sniffing, no referrer, no framing, no caching unless a route chose, HSTS in
    production, and a content security policy (none at all for JSON; the pages' own style for HTML)."""
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Content-Security-Policy", CSP_HTML if response.mimetype == "text/html" else CSP_JSON)
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    if runtime().settings.production:
        response.headers["Strict-Transport-Security"] = HSTS
    return response


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    app.after_request(security_headers)

    @app.errorhandler(HookError)
    def hook_error(exc: HookError):
        g.error = exc.message
        response = outcome_response(exc.status, exc.message, exc.code)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        codes = {404: "not-found", 405: "not-supported", 413: "too-costly"}
        g.error = exc.description or exc.name
        response = outcome_response(exc.code or 500, g.error, codes.get(exc.code, "invalid"))
        for name, value in exc.get_headers():  # e.g. the Allow header a 405 must carry
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        g.error = "internal error"
        log.exception("unexpected error", extra={"fields": {"hookInstance": g.get("hook_instance")}})
        return outcome_response(500, "internal error in the CDS service; the error was logged", "exception")
