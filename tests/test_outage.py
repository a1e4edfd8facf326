"""The database down, locked or a worker killed, under load, in production mode (signed ES384 calls with
a unique jti each, 2 gunicorn workers, several clients): every call is answered 200 with its cards, and
afterwards every answered call has its audit row and the chain verifies (README, "Security and
reliability").

The PostgreSQL test starts a throw-away cluster of its own on a free port (never the shared server) and
runs when CDS_TEST_POSTGRES_URL is set and PostgreSQL's programs are installed (CI has both)."""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from builders import SELECT, hook_request, service_request
from cds_service import cli
from test_serving import free_port
from test_shutdown import workers
from tokens import ISSUER, Client

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 4
METRICS_TOKEN = "outage-test-metrics-token"  # production serves /metrics with its token only
PG_BIN = (sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
          or [""])[-1]


class Postgres:
    """A PostgreSQL cluster of this test only, in a temporary folder: stopped and started at will."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="cds-test-pg-"))
        self.data, self.port = self.dir / "data", free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.dir, "postgres")
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def run(self, program: str, *args: str) -> None:
        argv = [f"{PG_BIN}/{program}", *args]
        if os.geteuid() == 0:
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres():
    if not os.environ.get("CDS_TEST_POSTGRES_URL") or not PG_BIN:
        pytest.skip("CDS_TEST_POSTGRES_URL is not set or PostgreSQL is not installed")
    pg = Postgres()
    yield pg
    pg.destroy()


class Service:
    """gunicorn in production mode as the image runs it, trusting one signing client."""

    def __init__(self, tmp: Path, database_url: str, **env: str):
        self.tmp, self.client = tmp, Client(tmp)
        self.journal = tmp / "journal"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "CDS_ENV": "production", "CDS_DATABASE_URL": database_url,
               "CDS_TRUSTED_ISSUERS": f'{{"{ISSUER}": "{self.client.jwks_file}"}}', "CDS_PUBLIC_BASE_URL": self.base,
               "CDS_PATIENT_HASH_KEY": "test-key", "CDS_JOURNAL_DIR": str(self.journal),
               "CDS_METRICS_TOKEN": METRICS_TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
               "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4", "CDS_LOG_LEVEL": "WARNING", **env}
        self.log = (tmp / "server.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
             "cds_service:create_app()"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if requests.get(f"{self.base}/health", timeout=1).ok and len(workers(self.process.pid)) == 2:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail("gunicorn did not start:\n" + self.output())

    def load(self, scenario, timeout: float = 3.0) -> tuple[list[str], list[str]]:
        """CLIENTS keep-alive clients call (a new token each time) until scenario() returns.
        Returns (hookInstances answered 200 with a card, descriptions of the other outcomes)."""
        url = f"{self.base}/cds-services/{SELECT}"
        body = hook_request([service_request(code="71250")])
        answered, failed, lock, done = [], [], threading.Lock(), threading.Event()

        def client(_):
            session = requests.Session()
            while not done.is_set():
                instance = str(uuid.uuid4())
                try:
                    response = session.post(url, json={**body, "hookInstance": instance}, timeout=timeout,
                                            headers=self.client.headers(url))
                    outcome = response.status_code == 200 and bool(response.json()["cards"]) or response.status_code
                except (requests.RequestException, ValueError) as exc:
                    outcome = type(exc).__name__
                with lock:
                    (answered.append(instance) if outcome is True else failed.append(f"{instance}: {outcome}"))
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, n) for n in range(CLIENTS)]
            try:
                scenario()
            finally:
                done.set()
            for f in futures:
                f.result()
        return answered, failed

    def metric(self, name: str) -> float:
        response = requests.get(f"{self.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                                timeout=5)
        assert response.status_code == 200, response.status_code
        text = response.text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
                   or line.startswith(name + "{"))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


def audited(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT hook_instance FROM cds_hook_calls")).scalars())
    finally:
        engine.dispose()


def verify(url: str, capsys) -> str:
    capsys.readouterr()
    status = cli.main(["audit", "verify", "--database-url", url])
    out = capsys.readouterr().out
    assert status == 0, out
    return out


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def test_postgres_stopped_for_10_s_and_a_worker_killed_meanwhile_lose_no_call_and_no_audit_row(
        postgres, tmp_path, capsys):
    assert cli.main(["migrate", "--database-url", postgres.url]) == 0  # the deploy's migration (production: check)
    service = Service(tmp_path, postgres.url)
    killed = []

    def outage():
        time.sleep(2)
        postgres.stop()
        time.sleep(5)
        killed.append(workers(service.process.pid)[0])
        os.kill(killed[0], signal.SIGKILL)  # its journal holds the calls it answered during the outage
        time.sleep(5)
        postgres.start()
        time.sleep(4)
    try:
        answered, failed = service.load(outage)
        fallbacks = service.metric("cds_jti_memory_claims_total")
    finally:
        service.stop()
    missing = set(answered) - audited(postgres.url)
    report(capsys, f"outage: PostgreSQL stopped 10 s, a worker SIGKILLed during it: {len(answered)} calls answered "
                   f"200, {len(failed)} not ({failed[:3]}), {fallbacks:.0f} jti claims in memory, "
                   f"{len(missing)} answered calls without an audit row")
    # The calls in flight on the killed worker fail at the client (their connection is cut, before or
    # while the answer is read): at most one per client; every other call is answered with its cards.
    assert len(failed) <= CLIENTS and all(f.endswith(("ConnectionError", "ChunkedEncodingError")) for f in failed), \
        failed
    assert len(answered) > 100 and fallbacks > 0
    assert not missing
    assert not list(service.journal.glob("*.jsonl"))  # drained and deleted
    assert "audit chain intact" in verify(postgres.url, capsys)


def test_an_instance_started_while_postgres_is_down_answers_and_audits_once_it_is_back(postgres, tmp_path, capsys):
    assert cli.main(["migrate", "--database-url", postgres.url]) == 0  # the deploy's migration ran before
    postgres.stop()
    service = Service(tmp_path, postgres.url, CDS_DB_SCHEMA="check")  # e.g. a pod restarted during the outage
    try:
        ready = requests.get(f"{service.base}/ready", timeout=5)
        answered, failed = service.load(lambda: time.sleep(3))
        postgres.start()
        for _ in range(100):  # the journal is drained when the database is back (retried every 5 s at most)
            if set(answered) <= audited(postgres.url):
                break
            time.sleep(0.2)
    finally:
        service.stop()
    missing = set(answered) - audited(postgres.url)
    report(capsys, f"outage: instance started while PostgreSQL was down: {len(answered)} calls answered 200, "
                   f"{len(failed)} not, {len(missing)} without an audit row once it was back")
    assert ready.status_code == 200 and ready.json()["database"] == "unreachable"
    assert not failed and len(answered) > 50
    assert not missing
    assert "audit chain intact" in verify(postgres.url, capsys)


def test_sqlite_locked_by_another_writer_calls_are_answered_at_once_and_audited_after(tmp_path, capsys):
    database = tmp_path / "cds.db"
    assert cli.main(["migrate", "--database-url", f"sqlite:///{database}"]) == 0  # production only checks the schema
    service = Service(tmp_path, f"sqlite:///{database}")

    def lock():
        time.sleep(1)
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer takes the write lock and keeps it 8 s
        time.sleep(8)
        holder.execute("COMMIT")
        holder.close()
        time.sleep(2)
    try:
        answered, failed = service.load(lock, timeout=3.0)  # a call waiting on the lock (5 s a try) would time out
    finally:
        service.stop()
    missing = set(answered) - audited(f"sqlite:///{database}")
    report(capsys, f"outage: SQLite locked 8 s by another writer: {len(answered)} calls answered 200, "
                   f"{len(failed)} not, {len(missing)} answered calls without an audit row")
    assert not failed and len(answered) > 100
    assert not missing
    assert "audit chain intact" in verify(f"sqlite:///{database}", capsys)
