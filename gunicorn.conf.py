"""gunicorn settings for the CDS service: `gunicorn -c gunicorn.conf.py "cds_service:create_app()"`.

Every value can be changed without editing this file:

  GUNICORN_BIND        address(es) to listen on, comma-separated (default 127.0.0.1:8000;
                       the container passes --bind 0.0.0.0:8000)
  WEB_CONCURRENCY      worker processes (default 2 x usable cores + 1, at most 8)
  GUNICORN_THREADS     threads per worker (default 4: a worker waiting on the EHR's FHIR server
                       still answers other calls)
  GUNICORN_WORKER_CONNECTIONS  connections a worker holds at once (default threads + 2; see below)
  GUNICORN_TIMEOUT     seconds a silent worker lives before it is killed and replaced (default 30)
  GUNICORN_GRACEFUL_TIMEOUT  seconds in-flight calls get to finish on SIGTERM (default 20)
  GUNICORN_KEEPALIVE   seconds an idle keep-alive connection is held (default 5: EHRs and proxies
                       reuse connections)
  GUNICORN_READ_TIMEOUT  seconds a request (head and body) may take to arrive once it started;
                       it is read by the worker's event loop, not a thread (default 10; see
                       cds_service/serving.py)
  GUNICORN_ACCESSLOG   access log target, e.g. "-" for stderr (default: off; the service writes
                       its own JSON line per hook call)
  GUNICORN_LOGLEVEL    gunicorn's own log level (default info)
  GUNICORN_CONTROL_SOCKET  path of gunicorn's control socket (default: none)

Command-line flags and GUNICORN_CMD_ARGS take precedence over this file.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name}={raw!r} is not an integer") from None
    if value < 1:
        raise SystemExit(f"gunicorn.conf.py: {name} must be at least 1")
    return value


def usable_cores() -> int:
    """Cores this process may use: the CPU affinity mask, lowered by a cgroup v2 CPU quota
    (a container limited with --cpus)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))  # ceiling
    except (OSError, ValueError):
        pass
    return max(1, cores)


# -- serving ------------------------------------------------------------------------------
wsgi_app = "cds_service:create_app()"
bind = [a.strip() for a in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",") if a.strip()]
workers = _int("WEB_CONCURRENCY", min(2 * usable_cores() + 1, 8))
# gthread, except that a request is read whole (with a deadline) before it takes a thread: slow
# or half-open clients cannot hold the threads (cds_service/serving.py).
worker_class = "cds_service.serving.BufferingThreadWorker"
threads = _int("GUNICORN_THREADS", 4)
# A gthread worker accepts connections while it holds fewer than worker_connections (gunicorn's
# default: 1000), busy or not. Keep-alive connections opened together (a proxy's pool, the
# benchmark's clients) then often all land on one worker, which runs them on one core under
# its GIL while the other workers idle. A worker whose threads are all busy stops accepting
# here (at most 2 calls queued in it, at most 2 idle keep-alive connections kept), so the
# connections spread over the workers.
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", threads + 2)

# Load the application (knowledge base, FHIR models warmed by create_app) once in the master,
# then fork: workers start warm and share the loaded pages copy-on-write.
preload_app = True


def pre_fork(server, worker):
    """Before each worker is forked, move what the master loaded (the app, its knowledge, the FHIR
    models: some 100,000 objects) out of the garbage collector's reach. A full collection in a
    worker then looks only at what the worker made, instead of pausing a call for tens of
    milliseconds, and the loaded pages stay shared between the workers."""
    import gc

    gc.collect()
    gc.freeze()


# -- time limits -----------------------------------------------------------------------------
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 20)
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# -- logging ---------------------------------------------------------------------------------
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")

# -- process housekeeping -------------------------------------------------------------------
# The worker heartbeat file lives in memory where there is a tmpfs (a disk-backed /tmp in a
# container can stall fchmod and get healthy workers killed).
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"

# gunicorn >= 25.1 opens a control socket under $HOME by default: a read-only home in a
# container, or two instances on one machine, would collide. Only on request.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True


# -- Prometheus multiprocess mode -----------------------------------------------------------
# prometheus-client keeps each worker's metrics in files under PROMETHEUS_MULTIPROC_DIR, so that
# /metrics adds up all workers. This file is read before the app is imported (preload), so a
# default set here is seen by prometheus-client. Files left by an earlier run would be counted
# again, and a dead worker's live gauges must be dropped.
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cds-service-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
