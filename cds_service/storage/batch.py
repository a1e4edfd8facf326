"""Writes off the request path, in batches: a per-process queue drained by a background thread.

A hook call never waits on the database (or on another worker's SQLite lock). Items leave the
queue only under one lock and are written under it, so they keep the order they were submitted
in. flush() writes everything queued before it returns; it runs at exit (a SIGTERM'd gunicorn
worker leaves through sys.exit), and whenever a reader needs what was queued.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger("cds_service.storage")

BATCH_SECONDS = 0.05  # how long the writer gathers items before one transaction


class BatchWriter:
    def __init__(self, write: Callable[[list], Any], purpose: str):
        """write(items) stores a batch in one transaction; purpose names it in the thread and the log."""
        self.write = write
        self.purpose = purpose
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.writing = threading.Lock()
        self.started = threading.Lock()
        self.wake = threading.Event()
        self.pid = None
        atexit.register(self.flush)

    def submit(self, item: Any) -> None:
        if self.pid != os.getpid():  # first item in this process (gunicorn forks after preload)
            with self.started:
                if self.pid != os.getpid():
                    self.pid = os.getpid()
                    self.writing = threading.Lock()  # a lock held at fork time stays held in the child
                    threading.Thread(target=self._run, name=f"cds-{'-'.join(self.purpose.split())}",
                                     daemon=True).start()
        self.queue.put(item)
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(BATCH_SECONDS)  # let a busy worker's items gather into one transaction
            self.flush()

    def flush(self) -> None:
        with self.writing:
            items = []
            while True:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if not items:
                return
            try:
                self.write(items)
            except Exception:  # never break the ordering workflow: the loss is logged
                log.exception("%s: %d item(s) not written", self.purpose, len(items))


def statement_writer(store, purpose: str) -> BatchWriter:
    """A BatchWriter of (statement, rows) pairs, each batch executed in one write transaction of store."""
    return BatchWriter(lambda work: store.write(lambda conn: [conn.execute(st, rows) for st, rows in work]), purpose)
