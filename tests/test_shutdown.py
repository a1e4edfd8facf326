"""Shutdown under load: a gunicorn worker stopped with SIGTERM or killed with SIGKILL loses no audit row
of a call it answered (a killed worker's journal is replayed; README, "Security and reliability")."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from builders import SELECT, hook_request, service_request
from cds_service import create_app
from test_serving import free_port

ROOT = Path(__file__).resolve().parent.parent
CALLS = 1200
CLIENTS = 8


def start(tmp: Path):
    port = free_port()
    env = {**os.environ, "CDS_ENV": "development", "CDS_DATABASE_URL": f"sqlite:///{tmp / 'cds.db'}",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4",
           "CDS_LOG_LEVEL": "WARNING"}
    log = (tmp / "server.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
         "cds_service:create_app()"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{base}/health", timeout=1).status_code == 200 and len(workers(process.pid)) == 2:
                return process, base, log
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    process.kill()
    log.seek(0)
    pytest.fail("gunicorn did not start:\n" + log.read())


def workers(master: int) -> list[int]:
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(pid) for pid in f.read().split()]


def load(base: str, at_third, calls: int = CALLS):
    """`calls` hook calls from CLIENTS keep-alive clients, each with its own hookInstance; at_third()
    runs once a third of them were answered. Returns (answered hookInstances, failed count)."""
    body = hook_request([service_request(code="71250")])
    answered, failed, lock, fired = [], [], threading.Lock(), threading.Event()

    def client(share: int):
        session = requests.Session()
        for _ in range(share):
            instance = str(uuid.uuid4())
            try:
                response = session.post(f"{base}/cds-services/{SELECT}", json={**body, "hookInstance": instance},
                                        timeout=10)
                ok = response.status_code == 200 and response.json()["cards"]
            except (requests.RequestException, ValueError):
                ok = False
            with lock:
                (answered if ok else failed).append(instance)
                if len(answered) >= calls // 3 and not fired.is_set():
                    fired.set()
                    at_third()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, [calls // CLIENTS] * CLIENTS))
    return answered, len(failed)


def audited(tmp: Path) -> set[str]:
    with sqlite3.connect(tmp / "cds.db") as conn:
        return {row[0] for row in conn.execute("SELECT hook_instance FROM cds_hook_calls")}


def stop(process, log) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    log.close()


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def test_sigterm_of_a_worker_under_load_loses_no_audit_row(tmp_path, capsys):
    process, base, log = start(tmp_path)
    victim = []

    def terminate_a_worker():
        victim.append(workers(process.pid)[0])
        os.kill(victim[0], signal.SIGTERM)
    try:
        answered, failed = load(base, terminate_a_worker)
        assert victim and victim[0] not in workers(process.pid)  # it went, and was replaced
    finally:
        stop(process, log)
    missing = set(answered) - audited(tmp_path)
    report(capsys, f"shutdown: SIGTERM of worker under load: {len(answered)} calls answered, {failed} failed at "
                   f"the client, {len(missing)} answered calls without an audit row")
    assert not failed, "a graceful stop answers every call it took, and every request still being read"
    assert len(answered) == CALLS
    assert not missing


def test_sigkill_of_a_worker_loses_no_audit_row_after_the_replay(tmp_path, capsys):
    process, base, log = start(tmp_path)
    killed_at = []

    def kill_a_worker():
        killed_at.append(time.monotonic())
        os.kill(workers(process.pid)[0], signal.SIGKILL)
    try:
        answered, failed = load(base, kill_a_worker)
    finally:
        stop(process, log)
    before_replay = len(set(answered) - audited(tmp_path))
    create_app({"database_url": f"sqlite:///{tmp_path / 'cds.db'}"})  # the next start replays what is left
    missing = set(answered) - audited(tmp_path)
    report(capsys, f"shutdown: SIGKILL of worker under load: {len(answered)} calls answered, {failed} failed at "
                   f"the client, {before_replay} answered calls without an audit row at the stop, "
                   f"{len(missing)} after the replay at the next start")
    assert killed_at and len(answered) >= CALLS * 0.9
    assert not missing
