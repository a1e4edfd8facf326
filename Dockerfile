# CDS Hooks service: production image (gunicorn, CDS_ENV=production).
# The base image is pinned to an exact release; pin its digest too where your registry mirrors it
# (FROM python:3.11.11-slim-bookworm@sha256:...), and rebuild when it gets security fixes.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CDS_ENV=production \
    CDS_KNOWLEDGE_DIR=/app/knowledge \
    CDS_JOURNAL_DIR=/var/lib/cds-service/journal \
    PROMETHEUS_MULTIPROC_DIR=/tmp/cds-metrics

WORKDIR /app
RUN useradd --create-home --uid 10001 cds

# Every dependency (and the build backend) at the version and hash of requirements.lock, made from
# pyproject.toml by pip-compile (see the README): two builds of one commit install the same files.
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY cds_service/ cds_service/
# The project itself, from this source, with the locked build backend and no other download.
# hadolint ignore=DL3013
RUN pip install --no-deps --no-build-isolation --no-index .
COPY knowledge/ knowledge/
COPY safety/ safety/
COPY gunicorn.conf.py ./
# The audit journal (written before each answer, drained into the database): a folder of the image's
# user, where Kubernetes mounts its volume (deploy/kubernetes/deployment.yaml).
RUN mkdir -p /var/lib/cds-service/journal /tmp/cds-metrics \
    && chown cds:cds /var/lib/cds-service/journal /tmp/cds-metrics

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]
# The database schema is changed by `cds-service migrate` (a Job, once per release), never at start.
ENTRYPOINT ["gunicorn", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "cds_service:create_app()"]
