"""Smoke test of the production serving command: the same gunicorn command and settings the
Docker image runs (CDS_ENV=production, gunicorn.conf.py, multiprocess metrics), on loopback."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import requests

from tokens import Client

ROOT = Path(__file__).resolve().parent.parent
# The README's example, with today's date put in as its curl command does.
EXAMPLE = json.loads((ROOT / "examples" / "order-select-ct-chest-girl.json").read_text()
                     .replace("__TODAY__", date.today().isoformat()))
SERVICE = "/cds-services/acr-all-staging-order-select"
METRICS_TOKEN = "metrics-scraper-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(tmp: Path, **extra_env):
    """gunicorn as the image runs it (its entrypoint, with the port changed), on loopback:
    yields (base URL, trusted client, log file)."""
    trusted = Client(tmp)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CDS_ENV": "production", "CDS_PUBLIC_BASE_URL": base, "CDS_METRICS_TOKEN": METRICS_TOKEN,
           "CDS_TRUSTED_ISSUERS": json.dumps({"https://ehr.example.org": str(trusted.jwks_file)}),
           "CDS_DATABASE_URL": f"sqlite:///{tmp / 'cds.db'}", "CDS_DB_SCHEMA": "migrate",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), "WEB_CONCURRENCY": "2", **extra_env}
    log = (tmp / "server.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
         "cds_service:create_app()"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            log.seek(0)
            pytest.fail("gunicorn did not start:\n" + log.read())
        yield base, trusted, log
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(tmp_path_factory.mktemp("serving")) as served:
        yield served


def test_signed_hook_call_under_gunicorn(server):
    base, trusted, log = server
    response = requests.post(base + SERVICE, json=EXAMPLE, headers=trusted.headers(base + SERVICE), timeout=5)
    assert response.status_code == 200
    card = response.json()["cards"][0]
    assert card["indicator"] == "warning" and card["suggestions"][0]["actions"][0]["resource"]["code"][
        "coding"][0]["code"] == "71046"
    unsigned = requests.post(base + SERVICE, json=EXAMPLE, timeout=5)
    assert unsigned.status_code == 401 and unsigned.json()["resourceType"] == "OperationOutcome"


def test_readiness_metrics_and_json_log_under_gunicorn(server):
    base, trusted, log = server
    hook_instance = "5b0e2a53-0c1d-4b3e-9d55-6f0b7b8f3c21"
    requests.post(base + SERVICE, json={**EXAMPLE, "hookInstance": hook_instance},
                  headers=trusted.headers(base + SERVICE), timeout=5).raise_for_status()
    assert requests.get(f"{base}/ready", timeout=5).json()["status"] == "ready"
    metrics = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5).text
    assert 'cds_hook_requests_total{service="acr-all-staging-order-select",status="200"}' in metrics
    time.sleep(0.2)
    log.seek(0)
    lines = [json.loads(line) for line in log.read().splitlines() if line.startswith("{")]
    calls = [line for line in lines if line.get("hookInstance") == hook_instance]
    assert calls and calls[0]["status"] == 200 and calls[0]["cards"] == {"warning": 1}
