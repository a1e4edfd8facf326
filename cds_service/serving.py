"""The gunicorn worker the service runs (gunicorn.conf.py): gthread, except that a request's head
and body are read by the worker's event loop, and only a request that has fully arrived takes a
thread. gthread hands a connection to a thread as soon as its first byte arrives, and the thread
then waits for the rest with no deadline: a few sockets sending half a request line held every
thread of an instance, and `/health` and signed calls waited for them (issue 20).

Here a connection still sending its request costs a socket and a buffer, no thread:
- the whole request (head and body) must arrive within READ_TIMEOUT seconds of its first byte
  (GUNICORN_READ_TIMEOUT, default 10), else the connection gets a 408 and is closed;
- at most MAX_READING connections per worker may be sending at once; past that the one that has
  been sending the longest is closed;
- a body is buffered up to MAX_BUFFERED bytes (CDS_MAX_BODY_BYTES + 64 KiB): a larger one is
  handed over as it is, and the application answers 413 after reading its limit.
Errors gunicorn answers itself (a malformed request line, headers too large) are JSON
OperationOutcomes like the application's. TLS is left to the proxy or ingress in front: with a
certificate configured (gunicorn's own TLS), connections are served as gthread serves them.
"""
from __future__ import annotations

import errno
import json
import os
import re
import selectors
import time
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker, TConn

from .config import Settings

READ_TIMEOUT = float(os.environ.get("GUNICORN_READ_TIMEOUT") or 10)
MAX_READING = 1000
MAX_BUFFERED = int(os.environ.get("CDS_MAX_BODY_BYTES") or Settings.max_body_bytes) + 64 * 1024
HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
EXPECT = re.compile(rb"\r\nexpect:", re.IGNORECASE)


def arrived(buffer: bytes | bytearray) -> bool:
    """Whether the request in buffer has arrived whole (or is too large to wait for)."""
    if len(buffer) > MAX_BUFFERED:
        return True
    end = buffer.find(HEAD_END)
    if end < 0:
        return False
    head = bytes(buffer[:end + 2])
    if EXPECT.search(head):
        return True  # the client waits for "100 Continue" before it sends the body
    if CHUNKED.search(head):
        return buffer.endswith(b"0\r\n\r\n")  # the last chunk (a trailer part is not waited for)
    length = CONTENT_LENGTH.search(head)
    return len(buffer) - end - 4 >= (int(length[1]) if length else 0)


def json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answers (400, 414, 431, ...) as a FHIR OperationOutcome."""
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "invalid", "diagnostics": f"{reason}: {mesg}"[:300]}]}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = json_error  # gunicorn's workers call util.write_error for the errors they answer


class BufferingThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading: dict[TConn, float] = {}  # connections sending their request -> deadline (oldest first)

    def accept(self, listener):
        if self.cfg.is_ssl:
            return super().accept(listener)
        try:
            sock, addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.start_reading(TConn(self.cfg, sock, addr, listener.getsockname()))

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection sends its next request: read it in the loop too. A stopping worker
        hands it to a thread at once, as gthread does (the connection stays counted, so the worker's
        graceful stop waits for its answer instead of closing it unanswered)."""
        if self.cfg.is_ssl or not self.alive:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.nr_conns -= 1
        self.start_reading(conn)

    def start_reading(self, conn: TConn) -> None:
        if len(self.reading) >= MAX_READING:
            self.drop(next(iter(self.reading)))
        conn.sock.setblocking(False)
        conn.buffered = bytearray()
        self.reading[conn] = time.monotonic() + READ_TIMEOUT
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_data, conn))

    def on_request_data(self, conn: TConn, sock) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        conn.buffered += data
        if arrived(conn.buffered):
            self.poller.unregister(sock)
            del self.reading[conn]
            conn.data_ready = True
            self.nr_conns += 1
            self.enqueue_req(conn)

    def handle(self, conn):
        buffered = getattr(conn, "buffered", None)
        if buffered is not None:  # in a thread: give the parser what the loop read
            conn.buffered = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(buffered))
        return super().handle(conn)

    def drop(self, conn: TConn, status: int | None = None) -> None:
        self.reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass
        if status and conn.buffered:
            try:
                json_error(conn.sock, status, "Request Timeout",
                           f"the request did not arrive within {READ_TIMEOUT:g} s")
            except OSError:
                pass
        conn.close()

    def murder_pending(self):
        super().murder_pending()
        if not self.alive:  # stopping: every request still being read gets a thread, counted until answered
            for conn in list(self.reading):
                del self.reading[conn]
                self.poller.unregister(conn.sock)
                conn.data_ready = True
                self.nr_conns += 1
                self.enqueue_req(conn)
            return
        now = time.monotonic()
        for conn in [c for c, deadline in self.reading.items() if deadline <= now]:
            self.drop(conn, 408)
