"""Where a hook call's time goes under gunicorn: `python -m bench.profile [--shape typical]`.

Starts the service as the benchmark does (gunicorn.conf.py, development mode, SQLite audit, JSON
log to a file), sends one request shape with 8 keep-alive clients, and samples every gunicorn
process with py-spy (a sampling profiler: `pip install py-spy`; it needs permission to trace
the processes, e.g. root). Only samples of a thread holding the GIL count (`--gil`: waiting is
not work); each is given to the part of the service its deepest known frame belongs to (a C
function such as orjson's counts for the Python code that called it). Prints the share per part.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

from bench import load, shapes
from bench.run import SERVICE_PATH, START_TIMEOUT, free_port, gunicorn

# (part, path fragments of its frames), deepest match wins; checked in this order at each frame.
PARTS = [
    ("fhir.resources / pydantic validation", ("(fhir/resources/", "(fhir_core/", "(pydantic/", "(pydantic_core/")),
    ("reading the record: evidence, statuses, dates (facts.py)", ("(cds_service/facts.py",)),
    ("code and text look-ups (knowledge/)", ("(cds_service/knowledge/",)),
    ("repeat-alert suppression, site code map (suppression.py, sitecodes.py)",
     ("(cds_service/suppression.py", "(cds_service/sitecodes.py")),
    ("decision (decide.py)", ("(cds_service/decide.py",)),
    ("cards and suggestions (cards.py)", ("(cds_service/cards.py",)),
    ("prefetch and FHIR data (fhir_data.py)", ("(cds_service/fhir_data.py",)),
    ("envelope checks (hooks.py), order matching (pipeline.py)", ("(cds_service/hooks.py", "(cds_service/pipeline.py")),
    ("audit writer thread (storage, SQLAlchemy, SQLite)", ("(cds_service/storage/", "(sqlalchemy/")),
    ("JSON log line (logging)", ("(cds_service/observability.py", "(logging/")),
    ("metrics (prometheus_client)", ("(prometheus_client/",)),
    ("routes: body parse (orjson), answer, auth, audit enqueue (api.py, jsonio.py)",
     ("(cds_service/api.py", "(cds_service/jsonio.py")),
    ("CORS (flask_cors)", ("(flask_cors/",)),
    ("Flask and Werkzeug", ("(flask/", "(werkzeug/")),
    ("gunicorn: sockets, HTTP parsing, threads", ("(gunicorn/", "(selectors.py", "(socket.py", "(concurrent/",
                                                  "(threading.py", "(queue.py")),
]


def part_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # leaf first
        for part, fragments in PARTS:
            if any(f in frame for f in fragments):
                return part
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="typical", choices=["typical", "long", "no-prefetch"])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if not spy:
        print("bench.profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="cds-profile-"))
    env = {**os.environ, "CDS_ENV": "development", "CDS_LOG_LEVEL": "INFO",
           "CDS_DATABASE_URL": f"sqlite:///{workdir / 'cds.db'}",
           "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("GUNICORN_BIND", None)
    port = free_port()
    service = gunicorn("service", "cds_service:create_app()", port, env, workdir / "service.log")
    try:
        service.start()
        service.wait_ready(time.monotonic() + START_TIMEOUT)
        shape = next(s for s in shapes.build(date.today(), "http://127.0.0.1:9/fhir") if s.name == args.shape)
        load.run(port, SERVICE_PATH, shape.body, 200, 8)  # warm-up
        raw = workdir / "stacks.txt"
        spy_proc = subprocess.Popen([spy, "record", "--pid", str(service.proc.pid), "--subprocesses", "--rate",
                                     str(args.rate), "--duration", str(int(args.seconds)), "--format", "raw",
                                     "--gil", "--output", str(raw), "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)
        done = threading.Event()
        sent = Counter()

        def drive():
            while not done.is_set():
                result = load.run(port, SERVICE_PATH, shape.body, 400, 8)
                sent["calls"] += len(result.latencies)

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        _, err = spy_proc.communicate(timeout=args.seconds + 60)
        done.set()
        driver.join(timeout=60)
        if spy_proc.returncode != 0 or not raw.exists():
            print(f"bench.profile: py-spy failed: {err.decode(errors='replace')[-2000:]}", file=sys.stderr)
            return 2
        parts: Counter = Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                parts[part_of(stack)] += int(count)
        total = sum(parts.values())
        print(f"samples holding the GIL in the gunicorn processes, {args.shape} shape, 8 clients, {sent['calls']} calls, "
              f"{total} samples")
        for part, n in parts.most_common():
            print(f"  {100 * n / total:5.1f}%  {part}")
        return 0
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
