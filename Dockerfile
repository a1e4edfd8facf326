# CDS Hooks service: production image (gunicorn, CDS_ENV=production).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CDS_ENV=production \
    CDS_KNOWLEDGE_DIR=/app/knowledge \
    CDS_DATABASE_URL=sqlite:////app/instance/cds.db \
    CDS_JOURNAL_DIR=/app/instance/audit-journal \
    PROMETHEUS_MULTIPROC_DIR=/tmp/cds-metrics

WORKDIR /app
RUN useradd --create-home --uid 10001 cds

# Dependencies from the project's own metadata first (cached layer), then the code.
COPY pyproject.toml README.md ./
COPY cds_service/ cds_service/
# The project itself is installed; its dependency ranges are pinned in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[postgres]"
COPY knowledge/ knowledge/
COPY gunicorn.conf.py ./
RUN mkdir -p /app/instance /tmp/cds-metrics && chown cds:cds /app/instance /tmp/cds-metrics

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["gunicorn", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "cds_service:create_app()"]
