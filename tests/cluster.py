"""Several production instances of the service (gunicorn, as the image runs it) on one PostgreSQL,
behind Debian's nginx running deploy/nginx/cds-service.conf: for the multi-instance and rolling
deploy tests. Each run gets its own PostgreSQL schema (search_path), dropped at the end."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tokens import ISSUER, Client

ROOT = Path(__file__).resolve().parent.parent
NGINX_EXAMPLE = ROOT / "deploy" / "nginx" / "cds-service.conf"
SERVICE = "/cds-services/acr-all-staging-order-select"
EXAMPLE = json.loads((ROOT / "examples" / "order-select-ct-chest-girl.json").read_text()
                     .replace("__TODAY__", date.today().isoformat()))
PG_URL = os.environ.get("CDS_TEST_POSTGRES_URL")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

needs_cluster = pytest.mark.skipif(not PG_URL or not NGINX,
                                   reason="needs CDS_TEST_POSTGRES_URL (.ci/postgres.sh) and nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200:\n{log.read_text()[-4000:]}")


class Instance:
    """One instance: a gunicorn master and its workers, in a process group of their own."""

    def __init__(self, name: str, env: dict, directory: Path):
        self.name, self.env, self.directory = name, env, directory
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = directory / f"{name}.log"

    def start(self) -> None:
        metrics = self.directory / f"{self.name}-metrics"
        metrics.mkdir(exist_ok=True)
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", self.address,
                 "cds_service:create_app()"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics),
                     "CDS_JOURNAL_DIR": str(self.directory / f"{self.name}-journal")},  # its own volume
                start_new_session=True)
        wait_for(f"http://{self.address}/ready", self.log)

    def terminate(self) -> int:
        """SIGTERM to the master, as a container platform stops a container; its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL to every process of the instance, as when its container or machine dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()


class Nginx:
    """nginx with the example configuration, in front of the instances; X-Upstream names the one
    that answered."""

    def __init__(self, directory: Path, port: int):
        self.directory, self.port = directory, port
        self.base = f"http://127.0.0.1:{port}"
        self.conf = directory / "nginx.conf"
        self.log = directory / "nginx-error.log"
        self.process: subprocess.Popen | None = None

    def configure(self, instances: list[Instance], down: tuple[Instance, ...] = ()) -> None:
        site = NGINX_EXAMPLE.read_text()
        servers = "".join(f"    server {i.address} max_fails=1 fail_timeout=5s{' down' if i in down else ''};\n"
                          for i in instances)
        site, n = re.subn(r"(upstream cds_service \{\n)(?:.*\n)*?(?=\})",
                          lambda m: m.group(1) + servers, site)
        assert n == 1, "the example's upstream block was not found"
        site, n = re.subn(r"(?m)^\s*listen [^;]+;", f"    listen 127.0.0.1:{self.port};", site)
        assert n == 1, "the example's listen line was not found"
        site = re.sub(r"\n\s*ssl_certificate\S* [^;]+;", "", site)
        temp = self.directory / "nginx-temp"
        temp.mkdir(exist_ok=True)
        temp.chmod(0o777)
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}worker_processes 1;\npid {self.directory / 'nginx.pid'};\nerror_log {self.log} warn;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            f"  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
            "  add_header X-Upstream $upstream_addr always;\n"
            f"{site}\n}}\n")

    def command(self, *args: str) -> list[str]:
        return [NGINX, "-e", str(self.log), "-p", str(self.directory), "-c", str(self.conf), *args]

    def start(self) -> None:
        subprocess.run(self.command("-t", "-q"), check=True, capture_output=True)
        self.process = subprocess.Popen(self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        wait_for(f"{self.base}/health", self.log)

    def reload(self) -> None:
        """New configuration: new workers take new requests, old ones finish theirs."""
        subprocess.run(self.command("-s", "reload"), check=True, capture_output=True)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Cluster:
    def __init__(self, directory: Path, size: int):
        self.directory = directory
        self.client = Client(directory)
        self.schema = f"cds_cluster_{uuid.uuid4().hex[:10]}"
        self.admin = sa.create_engine(PG_URL)
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {self.schema}"))
        self.database_url = sa.make_url(PG_URL).update_query_dict(
            {"options": f"-csearch_path={self.schema}"}).render_as_string(hide_password=False)
        self.nginx = Nginx(directory, free_port())
        self.audience = self.nginx.base + SERVICE
        env = {**os.environ, "CDS_ENV": "production", "CDS_DATABASE_URL": self.database_url,
               "CDS_DB_SCHEMA": "check", "CDS_PUBLIC_BASE_URL": self.nginx.base,
               "CDS_TRUSTED_ISSUERS": json.dumps({ISSUER: str(self.client.jwks_file)}),
               "CDS_PATIENT_HASH_KEY": "cluster-test-key",  # one key on every instance: repeat alerts are shared
               "WEB_CONCURRENCY": "2", "GUNICORN_GRACEFUL_TIMEOUT": "20"}
        self.instances = [Instance(f"instance-{n + 1}", env, directory) for n in range(size)]
        self.env = env

    def start(self) -> None:
        # The migration step of a deploy: once, before the instances (which only check the schema).
        subprocess.run([sys.executable, "-m", "cds_service.cli", "migrate"], cwd=ROOT, env=self.env, check=True,
                       capture_output=True)
        for instance in self.instances:
            instance.start()
        self.nginx.configure(self.instances)
        self.nginx.start()

    def stop(self) -> None:
        self.nginx.stop()
        for instance in self.instances:
            instance.stop()
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {self.schema} CASCADE"))
        self.admin.dispose()

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.database_url)

    def hook_call(self, session: requests.Session | None = None, token: str | None = None,
                  hook_instance: str | None = None, timeout: float = 10, body: dict | None = None) -> requests.Response:
        body = {**(body or EXAMPLE), "hookInstance": hook_instance or str(uuid.uuid4())}
        token = token or self.client.token(self.audience)
        return (session or requests).post(self.audience, json=body, timeout=timeout,
                                          headers={"Authorization": f"Bearer {token}"})

    def name_of(self, response: requests.Response) -> str:
        """The instance that answered (the last nginx tried)."""
        address = response.headers.get("X-Upstream", "").split(",")[-1].strip()
        return next((i.name for i in self.instances if i.address == address), address or "nginx")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"), size=3)
    try:
        c.start()
        yield c
    finally:
        c.stop()
