"""The guidance pages: the knowledge base as HTML a clinician can read, print and link to.

One page per scenario variant (its table of ratings and radiation levels) and one per procedure
(the full rationale, what to do with each result, pitfalls, codes that map to it, sources); the
cards link to them. Read-only and public: the pages hold guidance, never patient data."""
from __future__ import annotations

import re
from typing import Callable

from flask import Blueprint, Flask, abort, current_app, has_request_context, render_template, request
from markupsafe import Markup, escape

from . import hazards, page_urls
from .config import Settings
from .knowledge import Knowledge, Procedure, Variant

bp = Blueprint("guidance", __name__, template_folder="templates")
BOLD = re.compile(r"\*\*(.+?)\*\*")
RESULT_LABELS = {"normal": "Normal", "negative": "Negative", "positive": "Positive", "indeterminate": "Indeterminate"}


def base_url(settings: Settings) -> Callable[[], str]:
    """The external base URL for links: CDS_PUBLIC_BASE_URL, else the URL the request came to."""
    def current() -> str:
        if settings.public_base_url:
            return settings.public_base_url.rstrip("/")
        return request.host_url.rstrip("/") if has_request_context() else ""
    return current


def knowledge() -> Knowledge:
    return current_app.extensions["cds"].knowledge


def rated_in(variant: Variant, k: Knowledge) -> list[tuple[Procedure, object]]:
    return [(p, vr) for p in k.procedures.values() for vr in p.ratings if vr.variant.id == variant.id]


def statements_for(variant: Variant, k: Knowledge) -> list[tuple[Procedure, object]]:
    """Statements without a rating that a patient of this variant could be shown."""
    return [(p, s) for p in k.procedures.values() for s in p.statements
            if variant.sex == "any" or s.sex in ("any", variant.sex)]


@bp.app_template_filter("bold")
def bold(text: str) -> Markup:
    """The knowledge's one piece of markdown (**bold**) as HTML; everything else escaped."""
    return Markup(BOLD.sub(r"<strong>\1</strong>", str(escape(text))))


@bp.context_processor
def shared() -> dict:
    return {"k": knowledge(), "urls": page_urls, "result_labels": RESULT_LABELS,
            "root": request.script_root}  # the pages' own links work below a path prefix too


@bp.get(page_urls.INDEX)
def index():
    return render_template("guidance/index.html")


@bp.get(page_urls.variant("<variant_id>"))
def variant_page(variant_id: str):
    k = knowledge()
    variant = next((v for v in k.variants if v.id == variant_id), None)
    if variant is None:
        abort(404)
    return render_template("guidance/variant.html", variant=variant, rated=rated_in(variant, k),
                           statements=statements_for(variant, k))


@bp.get(page_urls.procedure("<procedure_id>"))
def procedure_page(procedure_id: str):
    k = knowledge()
    procedure = k.procedures.get(procedure_id)
    if procedure is None:
        abort(404)
    alternative = k.procedures.get(procedure.alternative) if procedure.alternative else None
    sources = sorted({vr.source for vr in procedure.ratings} | set(re.findall(r"\b(S\d+)\b", " ".join(
        [procedure.note or "", *procedure.pitfalls, *(s.detail for s in procedure.statements)]))) & set(k.sources))
    return render_template("guidance/procedure.html", procedure=procedure, alternative=alternative, sources=sources)


@bp.get(page_urls.HAZARD_LOG)
def hazard_log_page():
    try:
        log = hazards.load(hazards.default_path(current_app.extensions["cds"].settings.knowledge_dir))
    except hazards.HazardLogError:
        abort(404)  # not deployed with this copy of the service
    return render_template("guidance/hazards.html", log=log)


@bp.errorhandler(404)
def not_found(_exc):
    return render_template("guidance/not_found.html"), 404


def register(app: Flask) -> None:
    app.register_blueprint(bp)
