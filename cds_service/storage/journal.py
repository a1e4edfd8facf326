"""The audit journal: an append-only local file per process, written before the answer is sent,
drained into the database in the background.

Each hook call's audit row (with its cards) is appended as one JSON line by one write() to a file
opened O_APPEND: once the call is answered the line is in the page cache, which outlives the
process (a SIGKILL, an out-of-memory kill); fsync is not asked for, so a crash of the machine itself
can lose the last seconds. Feedback the database cannot take at once is appended the same way.

A background thread writes the new lines into the database every BATCH_SECONDS; a batch that fails
(the database down, locked, slow) stays in the file and is tried again, backing off to
RETRY_MAX_SECONDS. Inserts are idempotent (a call by its (writer, seq), feedback by its entry key),
so a line written twice is stored once. Each process holds an exclusive flock on its own file; a
file whose lock can be taken belongs to a process that is gone, and is drained and deleted by the
first process that takes it (at start-up, and every ORPHAN_SECONDS). A drained file is deleted.

The disk budget (CDS_JOURNAL_MAX_MB) counts every file of the directory: past it, a record is not
journaled (the call is still answered), counted in cds_audit_journal_dropped_total and logged once a
minute; the call's sequence number is used all the same, so `cds-service audit verify` shows the gap.

Each call line carries the chain: its writer (this process), its number, the previous line's hash
and its own (audit.chain_hash), so the rows in the database show a change, a gap or a reordering.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import TimeoutError as WaitTimeout
from pathlib import Path

from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from .audit import normalized, chain_hash
from .card_feedback import entry_to_json
from .db import background, utcnow
from .schema import WRITER_MAX

log = logging.getLogger("cds_service.storage")

BATCH_SECONDS = 0.05       # how long the drainer gathers lines before one transaction
RETRY_MAX_SECONDS = 5.0    # the longest wait between two tries while the database is unavailable
ORPHAN_SECONDS = 2.0       # how often the files of processes that are gone are looked for
SEGMENT_BYTES = 1 << 20    # a drained file at least this long is replaced by a new one
LINES_PER_TRANSACTION = 500
FEEDBACK_WAIT_SECONDS = 1.0  # how long a feedback call waits for the database before it is journaled
DEFAULT_MAX_MB = 1024

DROPPED = Counter("cds_audit_journal_dropped_total",
                  "Audit records not journaled because the journal's disk budget was full", ["kind"])
DRAIN_FAILURES = Counter("cds_audit_journal_drain_failures_total",
                         "Journal batches the database did not take (tried again later)")


class Unavailable(Exception):
    pass


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lines(data: bytes) -> tuple[list[dict], int]:
    """The complete lines of data, parsed, and the bytes they span (a torn last line is left)."""
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            log.error("audit journal: an unreadable line was skipped")
    return records, end


class Journal:
    def __init__(self, store, directory: str | os.PathLike, max_bytes: int | None = None,
                 knowledge_version: str | None = None):
        """store: has write_journal(records) (a Store). directory: created if need be. knowledge_version:
        the knowledge release that answers, on every audit row."""
        self.store = store
        self.knowledge_version = knowledge_version
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"the audit journal's folder {self.directory} cannot be made ({exc.strerror}): "
                             "set CDS_JOURNAL_DIR to a writable folder") from None
        if not os.access(self.directory, os.W_OK):
            raise ValueError(f"the audit journal's folder {self.directory} is not writable: set CDS_JOURNAL_DIR "
                             "to a writable folder")
        self.housekeeping = lambda: None  # run by the drainer thread after each drain (retention.py)
        self.max_bytes = max_bytes or DEFAULT_MAX_MB << 20
        self.lock = threading.Lock()       # appends, in the order the calls were answered
        self.draining = threading.Lock()   # one drain at a time
        self.wake = threading.Event()
        self.pid: int | None = None
        self.retry_at = 0.0
        self.backoff = 0.0
        self.dropped_logged_at = float("-inf")
        self.used = self.size_on_disk()
        atexit.register(self.close)

    # -- this process's file ----------------------------------------------------------------
    def _start(self) -> None:
        """First record of this process (gunicorn forks after the app is loaded): its file and drainer."""
        self.pid = os.getpid()
        self.writer = f"{socket.gethostname()[:40]}-{self.pid}-{secrets.token_hex(4)}"[-WRITER_MAX:]
        self.seq, self.prev, self.part = 0, "", 0
        self.fd = self.reader = None
        self._new_segment()
        threading.Thread(target=self._run, name="cds-audit-journal", daemon=True).start()

    def _new_segment(self) -> tuple:
        """Open this process's next file (and lock it); returns the previous file's (fd, reader)."""
        self.part += 1
        self.path = self.directory / f"{self.writer}.{self.part:05d}.jsonl"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _lock(fd)
        old = (self.fd, self.reader)
        self.fd, self.reader, self.drained = fd, open(self.path, "rb"), 0
        return old

    def _append(self, kind: str, record: dict) -> bool:
        """Under self.lock: one line, unless the disk budget is spent (or the disk is full)."""
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        problem = None
        if self.used + len(line) > self.max_bytes:
            problem = f"full ({self.used} of {self.max_bytes} bytes, CDS_JOURNAL_MAX_MB)"
        else:
            try:
                os.write(self.fd, line)
            except OSError as exc:  # e.g. the volume is full: the call is answered all the same
                problem = f"not writable ({exc.strerror})"
        if problem is None:
            self.used += len(line)
            return True
        DROPPED.labels(kind).inc()
        now = time.monotonic()
        if now - self.dropped_logged_at >= 60:
            self.dropped_logged_at = now
            log.error("audit journal %s: %s records are not kept until the database takes the journal",
                      problem, kind)
        return False

    def submit(self, **call) -> None:
        """Journal a hook call's audit row (service_id, hook_instance, status, latency_ms, data_source,
        cards, optional called_at, issuer and knowledge_version): before the answer is sent."""
        call.setdefault("knowledge_version", self.knowledge_version)
        row = normalized(call)
        with self.lock:
            if self.pid != os.getpid():
                self._start()
            self.seq += 1
            row_hash = chain_hash(self.prev, row)
            self._append("call", {"t": "call", "w": self.writer, "n": self.seq, "p": self.prev, "h": row_hash,
                                  "c": row})
            self.prev = row_hash
        self.wake.set()

    def store_feedback(self, service_id: str, entries: list, issuer: str | None = None) -> dict:
        """Feedback entries into the database if it takes them within FEEDBACK_WAIT_SECONDS, else into
        the journal (written to the database when it is back, still only about cards issued to `issuer`,
        as record_feedback). Returns record_feedback's counts, with "journaled" (entries not yet in the
        database) when it came to that."""
        future = background().submit(self._flush_and_record, service_id, entries, issuer)
        try:
            return future.result(FEEDBACK_WAIT_SECONDS)
        except (WaitTimeout, Unavailable, SQLAlchemyError) as exc:
            future.cancel()  # if it still commits later, the journaled copy is a duplicate, ignored
            problem = "slow" if isinstance(exc, WaitTimeout) else "unreachable"
        counts, valid = self.store.feedback.parse(entries)
        with self.lock:
            if self.pid != os.getpid():
                self._start()
            journaled = self._append("feedback", {"t": "feedback", "svc": service_id, "iss": issuer,
                                                  "at": utcnow().isoformat(), "e": [entry_to_json(e) for e in valid]})
        log.warning("feedback journaled: the database is %s", problem,
                    extra={"fields": {"service": service_id, "entries": len(valid), "kept": journaled}})
        self.wake.set()
        return {**counts, "journaled": len(valid) if journaled else 0}

    def _flush_and_record(self, service_id: str, entries: list, issuer: str | None) -> dict:
        if not self.flush():  # the cards being reported on must be on record first
            raise Unavailable()
        return self.store.record_feedback(service_id, entries, issuer)

    # -- draining ---------------------------------------------------------------------------------
    def _run(self) -> None:
        next_scan = 0.0
        while True:
            self.wake.wait(ORPHAN_SECONDS)
            self.wake.clear()
            time.sleep(BATCH_SECONDS)  # let a busy worker's lines gather into one transaction
            try:
                if time.monotonic() >= self.retry_at:
                    self.flush()
                self.housekeeping()
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + ORPHAN_SECONDS
                    self.replay()
                    self.used = self.size_on_disk()  # every process's files
            except Exception:  # the drainer never stops: the lines stay in the file
                log.exception("audit journal: drain failed")

    def _write(self, records: list[dict]) -> bool:
        try:
            for start in range(0, len(records), LINES_PER_TRANSACTION):
                self.store.write_journal(records[start:start + LINES_PER_TRANSACTION])
        except SQLAlchemyError as exc:
            DRAIN_FAILURES.inc()
            if not self.backoff:
                log.warning("audit journal: the database does not take it (%s); the lines stay on disk and are "
                            "written when it is back", type(exc).__name__)
            self.backoff = min(RETRY_MAX_SECONDS, max(0.1, self.backoff * 2))
            self.retry_at = time.monotonic() + self.backoff
            return False
        if self.backoff:
            log.warning("audit journal: the database is back; the journaled lines are written")
            self.backoff, self.retry_at = 0.0, 0.0
        return True

    def flush(self) -> bool:
        """Write the lines this process journaled that the database does not have yet; True when none
        is left."""
        with self.draining:
            if self.pid != os.getpid():
                return True
            self.reader.seek(self.drained)
            records, end = _lines(self.reader.read())
            if records and not self._write(records):
                return False
            self.drained += end
            if self.drained >= SEGMENT_BYTES:
                self._rotate()
            return True

    def _rotate(self) -> None:
        """Replace a drained file by a new one (under self.draining)."""
        with self.lock:
            if os.fstat(self.fd).st_size != self.drained:
                return  # a line came meanwhile: next time
            old_path = self.path
            old_fd, old_reader = self._new_segment()
            os.unlink(old_path)
            self.used = max(0, self.used - os.fstat(old_fd).st_size)
            os.close(old_fd)
            old_reader.close()

    def replay_at_start(self, seconds: float = 10.0) -> int:
        """At start-up, in the process that loads the app (before gunicorn forks): the files an earlier
        run left, for `seconds` at most (the workers' drainers take what is left)."""
        try:
            return self.replay(time.monotonic() + seconds)
        except Exception:
            log.exception("audit journal: the replay at start failed; the workers try again")
            return 0

    def replay(self, deadline: float = float("inf")) -> int:
        """Drain and delete the files of processes that are gone (their lock is free); returns the lines
        written. Stops at the first file the database does not take, or past the deadline (monotonic)."""
        written = 0
        own = getattr(self, "path", None) if self.pid == os.getpid() else None
        for path in sorted(self.directory.glob("*.jsonl")):
            if path == own or time.monotonic() > deadline:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if not _lock(fd):
                    continue  # a live process's
                with os.fdopen(os.dup(fd), "rb") as f:
                    records, _ = _lines(f.read())
                if records and not self._write(records):
                    return written
                size = os.fstat(fd).st_size
                try:
                    path.unlink()
                    self.used = max(0, self.used - size)
                except FileNotFoundError:
                    pass
                written += len(records)
                if records:
                    log.warning("audit journal: %d line(s) of %s replayed", len(records), path.name)
            finally:
                os.close(fd)
        return written

    def size_on_disk(self) -> int:
        total = 0
        for path in self.directory.glob("*.jsonl"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        """At exit: write what is left; a drained file is deleted, any other stays for a replay."""
        if self.pid != os.getpid():
            return
        try:
            done = self.flush()
        except Exception:
            log.exception("audit journal: the last drain failed; the file stays for a replay")
            return
        with self.lock:
            if done and os.fstat(self.fd).st_size == self.drained:
                self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.reader.close()
            self.pid = None
