"""A background writer for small bookkeeping writes (repeat-alert suppression, unmatched-order counts)."""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time

log = logging.getLogger("cds_service")
BATCH_SECONDS = 0.05  # let a busy worker's writes gather into one transaction


def purpose_slug(purpose: str) -> str:
    return "-".join(purpose.split())


class BatchWriter:
    """Writes off the request path: statements queued per process, drained by a background thread in
    one transaction per batch (as the audit's writer does), so a hook call never waits on the database."""

    def __init__(self, store, purpose: str):
        self.store = store
        self.purpose = purpose
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.writing = threading.Lock()
        self.started = threading.Lock()
        self.wake = threading.Event()
        self.pid = None
        atexit.register(self.flush)

    def submit(self, statement, rows: list[dict]) -> None:
        if self.pid != os.getpid():  # first write in this process (gunicorn forks after preload)
            with self.started:
                if self.pid != os.getpid():
                    self.pid = os.getpid()
                    self.writing = threading.Lock()
                    threading.Thread(target=self._run, name=f"cds-{purpose_slug(self.purpose)}", daemon=True).start()
        self.queue.put((statement, rows))
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(BATCH_SECONDS)
            self.flush()

    def flush(self) -> None:
        """Write everything queued so far, in order, in one transaction."""
        with self.writing:
            work = []
            while True:
                try:
                    work.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if not work:
                return
            try:
                self.store.write(lambda conn: [conn.execute(statement, rows) for statement, rows in work])
            except Exception:  # never break the ordering workflow: the loss is logged
                log.exception("could not record %d write(s) for %s", len(work), self.purpose)
