"""The benchmark, in one run: `python -m bench` (or `python bench/run.py`) from the repository root.

1. starts, on 127.0.0.1 and free ports: the service under gunicorn with gunicorn.conf.py (in
   development, and in production: a signed ES384 JWT with a unique jti per call, replay protection
   on, the database of --database-url / $CDS_BENCH_DATABASE_URL when given, else SQLite), the floor
   (bench/floor.py) under the same gunicorn settings, and a stub FHIR server;
2. checks once per request shape that the service answers 200 with a warning card;
3. sends each shape to service and floor with a bounded load generator (bench/load.py) at 1
   and at 8 concurrent clients, in alternating blocks so drift hits both alike;
4. prints median and p99 latency and throughput per shape, the service/floor ratios, the
   targets with PASS or MISS, and the machine and settings;
5. stops everything it started, also on error or Ctrl-C.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:   # `python bench/run.py`
    sys.path.insert(0, str(REPO))

from bench import load, shapes  # noqa: E402

CONFIG = REPO / "gunicorn.conf.py"
SERVICE_PATH = f"/cds-services/{shapes.SERVICE_ID}"
COUNTS = {"typical": 4000, "long": 1000, "no-prefetch": 2000}   # requests per target and concurrency
WARMUP = 100          # requests per target and concurrency before the clock starts (not counted)
BLOCKS = 4            # each measurement is split into blocks, alternating service and floor
START_TIMEOUT = 90.0  # seconds for a server to answer after start


class BenchError(Exception):
    pass


# -- servers ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    ready_path: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, deadline: float) -> None:
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with code {self.proc.returncode} at start-up\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection(load.HOST, self.port, timeout=2)
                conn.request("GET", self.ready_path)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not answer GET {self.ready_path} within "
                                 f"{START_TIMEOUT:.0f} s\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)   # gunicorn: graceful stop of the workers
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)   # its own session: only what we started
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  | {line}" for line in text[-lines:])


def gunicorn(name: str, app: str, port: int, env: dict[str, str], log: Path) -> Server:
    argv = [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), "--bind", f"127.0.0.1:{port}", app]
    ready = {"service": "/cds-services", "production": "/health"}.get(name, "/")
    return Server(name, argv, port, ready, env, log)


class Signer:
    """The production target's trusted CDS client: a P-384 key, its JWKS file, a signed token per call."""
    ISSUER = "https://ehr.bench.example.org"
    KID = "bench-key-1"

    def __init__(self, directory: Path, audience: str):
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec
        self.jwt, self.audience = jwt, audience
        self.key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.KID, alg="ES384", use="sig")
        self.jwks = directory / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": [jwk]}))

    def tokens(self, count: int) -> list[str]:
        """Authorization header values, each with its own jti (signed before the clock starts)."""
        now = int(time.time())
        return [f"Bearer {self.jwt.encode({'iss': self.ISSUER, 'aud': self.audience, 'iat': now, 'exp': now + 600, 'jti': uuid.uuid4().hex}, self.key, algorithm='ES384', headers={'kid': self.KID, 'typ': 'JWT'})}"
                for _ in range(count)]


# -- checks ---------------------------------------------------------------------------------------

def post(port: int, body: bytes, authorization: str | None = None) -> tuple[int, bytes]:
    client = load.Client(port)
    try:
        return client.request("POST", SERVICE_PATH, body, authorization)
    finally:
        client.close()


def stub_served(port: int) -> int:
    client = load.Client(port)
    try:
        status, data = client.request("GET", "/__stats")
    finally:
        client.close()
    return json.loads(data)["served"]


def verify(shape: shapes.Shape, service: int, floor: int, stub: int) -> str:
    """The service answers 200 with a warning card (and read the stub only without prefetch);
    the floor answers 200 with no cards. Returns the card's summary."""
    before = stub_served(stub)
    status, data = post(service, shape.body)
    if status != 200:
        raise BenchError(f"[{shape.name}] the service answered HTTP {status}, not 200: {data[:1000]!r}")
    cards = json.loads(data).get("cards") or []
    warnings = [c for c in cards if c.get("indicator") == "warning"]
    if not warnings:
        raise BenchError(f"[{shape.name}] the service answered no warning card: {data[:1000]!r}")
    fetched = stub_served(stub) - before
    if shape.name == "no-prefetch" and fetched < 2:
        raise BenchError(f"[{shape.name}] the service read {fetched} resources from the stub FHIR server, "
                         "expected the Patient and the Conditions")
    if shape.name != "no-prefetch" and fetched:
        raise BenchError(f"[{shape.name}] the service read the stub FHIR server although all was prefetched")
    status, data = post(floor, shape.body)
    if status != 200 or json.loads(data) != {"cards": []}:
        raise BenchError(f"[{shape.name}] the floor answered HTTP {status}: {data[:300]!r}")
    return warnings[0].get("summary", "")


# -- measuring ------------------------------------------------------------------------------------

def measure(shape: shapes.Shape, ports: dict[str, int], count: int, concurrency: int,
            warmup: int = WARMUP, signer: Signer | None = None) -> dict[str, load.Result]:
    """signer: signs a token per request for the "production" target."""
    results = {name: load.Result() for name in ports}

    def tokens(name: str, n: int) -> list[str] | None:
        return signer.tokens(n) if name == "production" else None
    for name, port in ports.items():
        warm = load.run(port, SERVICE_PATH, shape.body, warmup, concurrency, tokens(name, warmup))
        if warm.errors:
            raise BenchError(f"[{shape.name}] {name} failed during warm-up: {warm.errors[0]}")
    per_block = [count // BLOCKS + (1 if i < count % BLOCKS else 0) for i in range(BLOCKS)]
    for block, n in enumerate(per_block):
        order = list(ports) if block % 2 == 0 else list(reversed(ports))
        for name in order:
            result = load.run(ports[name], SERVICE_PATH, shape.body, n, concurrency, tokens(name, n))
            if result.errors:
                raise BenchError(f"[{shape.name}] {name}, {concurrency} clients: {len(result.errors)} failed "
                                 f"requests, first: {result.errors[0]}")
            results[name].add(result)
    return results


# -- report ---------------------------------------------------------------------------------------

def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine_facts(settings: dict, load_before: str) -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return [
        f"machine   {cpu}; {os.cpu_count()} cores ({usable} usable){memory}; {platform.system()} {platform.release()}",
        f"python    {platform.python_implementation()} {platform.python_version()}; gunicorn {version('gunicorn')}, "
        f"Flask {version('flask')}, fhir.resources {version('fhir.resources')}, pydantic {version('pydantic')}",
        f"gunicorn  {settings['workers']} workers x {settings['threads']} threads ({settings['worker_class']}, "
        f"worker_connections={settings.get('worker_connections', 1000)}), "
        f"preload_app={settings['preload_app']}, keepalive={settings['keepalive']} s, access log "
        f"{'on' if settings.get('accesslog') else 'off'} (same settings for service and floor)",
        "service   CDS_ENV=development (no JWT: calls without a token are accepted), CDS_LOG_LEVEL=INFO "
        "(its JSON log line per call to a file), audit database: SQLite in a temporary directory",
        f"production CDS_ENV=production: a signed ES384 JWT with a unique jti per call (signed before the clock "
        f"starts), replay protection on, audit journal and database: {settings['production_database']}",
        "load      closed loop on 127.0.0.1, Python threads with one keep-alive HTTP/1.1 connection each, "
        f"{WARMUP} warm-up requests per cell not counted, {BLOCKS} alternating blocks per cell",
        f"load avg  {load_before} (1/5/15 min) at the start: other work on the machine skews the figures, "
        "the p99s most",
    ]


def table(shape: shapes.Shape, count: int, cells: dict[int, dict[str, load.Result]]) -> list[str]:
    lines = [f"{shape.title}",
             f"  body {len(shape.body) / 1024:.1f} KiB; {count} requests per target and concurrency",
             "  clients |     service: median      p99     req/s |       floor: median      p99     req/s "
             "| latency s/f | throughput s/f",
             "  --------+---------------------------------------+----------------------------------------"
             "+-------------+---------------"]
    for concurrency, results in cells.items():
        s, f = results["service"], results["floor"]
        lines.append(f"  {concurrency:>7} | {s.median_ms:>13.2f} ms {s.p99_ms:>6.2f} ms {s.throughput:>8.0f}  "
                     f"| {f.median_ms:>14.2f} ms {f.p99_ms:>6.2f} ms {f.throughput:>8.0f}  "
                     f"| {s.median_ms / f.median_ms:>10.2f}x | {s.throughput / f.throughput:>13.2f}x")
    return lines


def production_table(cells: dict[int, dict[str, load.Result]]) -> list[str]:
    lines = ["typical, production shape (signed ES384 JWT, unique jti, replay protection on)",
             "  clients |  production: median      p99     req/s | development median | prod/dev median "
             "| prod p99/floor p99",
             "  --------+-----------------------------------------+--------------------+-----------------"
             "+-------------------"]
    for concurrency, r in cells.items():
        p, s, f = r["production"], r["service"], r["floor"]
        lines.append(f"  {concurrency:>7} | {p.median_ms:>16.2f} ms {p.p99_ms:>6.2f} ms {p.throughput:>8.0f}  "
                     f"| {s.median_ms:>15.2f} ms | {p.median_ms / s.median_ms:>14.2f}x "
                     f"| {p.p99_ms / f.p99_ms:>17.2f}x")
    return lines


def scaling_counts(shape: shapes.Shape, scale: float) -> tuple[int, int]:
    """(counted, warm-up) requests for a scaling cell: fewer as the body grows (about 1-3 s a cell)."""
    kib = len(shape.body) / 1024
    count = max(BLOCKS * 3, round(min(400, 20000 / kib) * scale))
    return count, max(2, min(20, count // 10))


def scaling_table(cells: list[tuple[shapes.Shape, int, dict[str, load.Result]]]) -> list[str]:
    lines = ["scaling: the typical call with more Conditions, then with more draft orders (1 client, full prefetch)",
             "  Conditions | drafts |     body | requests | service median      p99 | floor median "
             "| service - floor | s/f",
             "  -----------+--------+----------+----------+-------------------------+--------------"
             "+-----------------+-------"]
    for shape, count, r in cells:
        conditions, drafts = (int(x) for x in shape.name.split("-")[1:])
        s, f = r["service"], r["floor"]
        lines.append(f"  {conditions:>10} | {drafts:>6} | {len(shape.body) / 1024:>5.0f} KiB | {count:>8} "
                     f"| {s.median_ms:>10.2f} ms {s.p99_ms:>7.2f} ms | {f.median_ms:>9.2f} ms "
                     f"| {s.median_ms - f.median_ms:>12.2f} ms | {s.median_ms / f.median_ms:>5.2f}x")
    return lines


def targets(all_cells: dict[str, dict[int, dict[str, load.Result]]]) -> list[tuple[bool, str]]:
    checks = []
    typical = all_cells.get("typical", {})
    for c, r in typical.items():
        ratio = r["service"].median_ms / r["floor"].median_ms
        checks.append((ratio <= 1.5, f"typical, {c} client{'s' * (c > 1)}: median latency {ratio:.2f}x floor (target <= 1.5x)"))
    for c, r in typical.items():
        ratio = r["service"].throughput / r["floor"].throughput
        checks.append((ratio >= 2 / 3, f"typical, {c} client{'s' * (c > 1)}: throughput {ratio:.2f}x floor (target >= 0.67x)"))
    for c, r in all_cells.get("long", {}).items():
        ratio = r["service"].median_ms / r["floor"].median_ms
        checks.append((ratio <= 3.0, f"long record, {c} client{'s' * (c > 1)}: median latency {ratio:.2f}x floor (target <= 3x)"))
    for c, r in typical.items():
        ratio = r["service"].p99_ms / r["floor"].p99_ms
        checks.append((ratio <= 2.0, f"typical, {c} client{'s' * (c > 1)}: p99 {r['service'].p99_ms:.2f} ms, "
                                     f"{ratio:.2f}x floor's p99 (target <= 2x)"))
    for c, r in typical.items():
        if "production" not in r:
            continue
        ratio = r["production"].median_ms / r["service"].median_ms
        checks.append((ratio <= 1.5, f"typical, {c} client{'s' * (c > 1)}: production median "
                                     f"{r['production'].median_ms:.2f} ms, {ratio:.2f}x development (target <= 1.5x)"))
        if c >= 8:
            ratio = r["production"].p99_ms / r["floor"].p99_ms
            checks.append((ratio <= 2.0, f"typical, {c} clients: production p99 {r['production'].p99_ms:.2f} ms, "
                                         f"{ratio:.2f}x floor's p99 (target <= 2x)"))
    return checks


# -- main -----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the CDS service against a floor app.")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the request counts (default 1: %s)" %
                             ", ".join(f"{k} {v}" for k, v in COUNTS.items()))
    parser.add_argument("--concurrency", default="1,8", help="client counts, comma-separated (default 1,8)")
    parser.add_argument("--shapes", default=",".join(COUNTS),
                        help="shapes to run (default all; none: only --scaling)")
    parser.add_argument("--scaling", action="store_true",
                        help="also measure the cost against the number of Conditions and of draft orders")
    parser.add_argument("--database-url", default=os.environ.get("CDS_BENCH_DATABASE_URL", ""), metavar="URL",
                        help="the production target's database (default $CDS_BENCH_DATABASE_URL, else SQLite); "
                             "its cds_* tables get the benchmark's rows")
    parser.add_argument("--no-production", dest="production", action="store_false",
                        help="leave out the production target")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with the server logs")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip() and s.strip() != "none"]
    unknown = set(args.shapes) - set(COUNTS)
    if unknown or not (args.shapes or args.scaling) or not args.concurrency or min(args.concurrency) < 1 or args.scale <= 0:
        parser.error("bad --shapes, --concurrency or --scale")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)

    workdir = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    env = dict(os.environ)
    env.pop("GUNICORN_BIND", None)   # the benchmark binds loopback ports of its own
    env.update({"CDS_ENV": "development", "CDS_LOG_LEVEL": "INFO",
                "CDS_DATABASE_URL": f"sqlite:///{workdir / 'cds.db'}",
                "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
                "PYTHONDONTWRITEBYTECODE": "1"})
    settings = runpy.run_path(str(CONFIG))
    ports = {"service": free_port(), "floor": free_port(), "stub": free_port(), "production": free_port()}
    stub = Server("stub FHIR server", [sys.executable, "-m", "bench.stub_fhir", "--port", str(ports["stub"])],
                  ports["stub"], "/", env, workdir / "stub.log")
    service = gunicorn("service", "cds_service:create_app()", ports["service"], env, workdir / "service.log")
    floor = gunicorn("floor", "bench.floor:app", ports["floor"], env, workdir / "floor.log")
    servers = [stub, service, floor]
    base = f"http://127.0.0.1:{ports['production']}"
    signer = Signer(workdir, base + SERVICE_PATH)
    settings["production_database"] = "PostgreSQL (--database-url)" if args.database_url.startswith("postgresql") \
        else "SQLite in a temporary directory"
    if args.production:
        servers.append(gunicorn("production", "cds_service:create_app()", ports["production"], {
            **env, "CDS_ENV": "production", "CDS_TRUSTED_ISSUERS": json.dumps({Signer.ISSUER: str(signer.jwks)}),
            "CDS_PUBLIC_BASE_URL": base, "CDS_PATIENT_HASH_KEY": "bench-only-key",
            "CDS_DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'production.db'}",
            "CDS_DB_SCHEMA": "migrate",  # a scratch database: brought to the schema at start (production: check)
            "CDS_JOURNAL_DIR": str(workdir / "production-journal"),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus-production")}, workdir / "production.log"))
    started = time.monotonic()
    load_before = load_average()
    failed = False
    try:
        progress(f"bench: starting the stub FHIR server, the service and the floor (logs in {workdir})")
        for server in servers:
            server.start()
        deadline = time.monotonic() + START_TIMEOUT
        for server in servers:
            server.wait_ready(deadline)
        progress(f"bench: all up in {time.monotonic() - started:.1f} s")

        today = date.today()
        selected = [s for s in shapes.build(today, f"http://127.0.0.1:{ports['stub']}/fhir") if s.name in args.shapes]
        for shape in selected:
            summary = verify(shape, ports["service"], ports["floor"], ports["stub"])
            progress(f"bench: [{shape.name}] service answered 200 with a warning card: {summary[:90]}")

        targets_ports = {"service": ports["service"], "floor": ports["floor"]}
        typical_ports = {**targets_ports, "production": ports["production"]} if args.production else targets_ports
        if args.production:
            [typical] = [s for s in shapes.build(today, f"http://127.0.0.1:{ports['stub']}/fhir") if s.name == "typical"]
            status, data = post(ports["production"], typical.body, signer.tokens(1)[0])
            if status != 200 or not json.loads(data).get("cards"):
                raise BenchError(f"[production] a signed call answered HTTP {status}: {data[:300]!r}")
            progress("bench: [production] a signed call answered 200 with its cards")
        all_cells: dict[str, dict[int, dict[str, load.Result]]] = {}
        counts = {}
        for shape in selected:
            counts[shape.name] = max(BLOCKS, round(COUNTS[shape.name] * args.scale))
            for concurrency in args.concurrency:
                t0 = time.monotonic()
                cell = measure(shape, typical_ports if shape.name == "typical" else targets_ports,
                               counts[shape.name], concurrency, signer=signer)
                all_cells.setdefault(shape.name, {})[concurrency] = cell
                progress(f"bench: [{shape.name}] {concurrency} clients: {time.monotonic() - t0:.1f} s")
        scaled = []
        if args.scaling:
            for shape in shapes.scaling(today):
                verify(shape, ports["service"], ports["floor"], ports["stub"])
                count, warmup = scaling_counts(shape, args.scale)
                t0 = time.monotonic()
                scaled.append((shape, count, measure(shape, targets_ports, count, 1, warmup)))
                progress(f"bench: [{shape.name}] {time.monotonic() - t0:.1f} s")
        served = stub_served(ports["stub"])

        out = [f"CDS service benchmark, {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}", ""]
        out += machine_facts(settings, load_before) + [""]
        for shape in selected:
            out += table(shape, counts[shape.name], all_cells[shape.name]) + [""]
            if shape.name == "typical" and args.production:
                out += production_table(all_cells["typical"]) + [""]
        if scaled:
            out += scaling_table(scaled) + [""]
        out.append(f"(stub FHIR server: {served} reads served; latency = request sent to answer read, "
                   "median and p99 by nearest rank; throughput = requests / wall time of the blocks)")
        out += ["", "Targets"]
        checks = targets(all_cells)
        out += [f"  {'PASS' if ok else 'MISS'}  {text}" for ok, text in checks]
        out.append(f"\nwall time {time.monotonic() - started:.0f} s")
        print("\n".join(out), flush=True)
        return 1 if args.check and not all(ok for ok, _ in checks) else 0
    except BenchError as exc:
        failed = True
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        for server in servers[1:]:
            if server.proc is not None:
                print(f"bench: last lines of the {server.name} log:\n{server.tail(15)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        failed = True
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for server in reversed(servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {server.name}: {exc}", file=sys.stderr)
        if args.keep or failed:
            progress(f"bench: logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
