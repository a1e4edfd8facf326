"""Flask routes only: translate HTTP to calls and back. Every answer is JSON."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from . import hooks
from .fhir_data import DataUnavailable
from .hooks import HookError, operation_outcome

log = logging.getLogger("cds_service")
bp = Blueprint("cds", __name__)

JSON_TYPES = ("application/json", "application/fhir+json")


def runtime():
    return current_app.extensions["cds"]


def outcome_response(status: int, message: str, code: str = "invalid") -> Response:
    return current_app.json.response(operation_outcome(message, code)), status


def read_json() -> object:
    if request.mimetype not in JSON_TYPES and not request.mimetype.endswith("+json"):
        raise HookError(415, f"Content-Type must be application/json, not '{request.mimetype or 'none'}'")
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HookError(400, f"the request body is not valid JSON: {exc}") from None


@bp.get("/cds-services")
def discovery():
    return {"services": [s.discovery() for s in hooks.SERVICES.values()]}


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    service = hooks.SERVICES.get(service_id)
    if service is None:
        raise HookError(404, f"no CDS service with id '{service_id}'", "not-found")
    rt = runtime()
    hook_request = hooks.parse(read_json(), service, require_https=rt.settings.production)
    request.environ["cds.hook_instance"] = hook_request.hook_instance
    try:
        outcome = rt.handler.handle(hook_request)
    except DataUnavailable as exc:
        raise HookError(412, f"required FHIR data could not be obtained: {exc}", "not-found") from None
    return outcome.rendered.body


def register(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.errorhandler(HookError)
    def hook_error(exc: HookError):
        return outcome_response(exc.status, exc.message, exc.code)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        codes = {404: "not-found", 405: "not-supported", 413: "too-costly"}
        return outcome_response(exc.code or 500, exc.description or exc.name, codes.get(exc.code, "invalid"))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error (hookInstance=%s)", request.environ.get("cds.hook_instance", "-"))
        return outcome_response(500, "internal error in the CDS service; the error was logged", "exception")
