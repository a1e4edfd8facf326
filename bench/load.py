"""A bounded, closed-loop load generator on loopback.

`concurrency` client threads, each with its own keep-alive HTTP/1.1 connection, send POSTs
back to back until `count` requests have been sent in all; each latency is the time from
sending the request to having read the whole answer. It stops by itself.
"""
from __future__ import annotations

import http.client
import itertools
import math
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)   # seconds, one per request
    elapsed: float = 0.0                                    # wall time of the runs, seconds
    errors: list[str] = field(default_factory=list)

    def add(self, other: "Result") -> None:
        self.latencies.extend(other.latencies)
        self.elapsed += other.elapsed
        self.errors.extend(other.errors)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1000   # nearest rank

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


class Client:
    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(self, method: str, path: str, body: bytes | None = None,
                authorization: str | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"} if body is not None else {}
        if authorization:
            headers["Authorization"] = authorization
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = self.connect()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()   # the server dropped an idle keep-alive connection: once more
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run(port: int, path: str, body: bytes, count: int, concurrency: int, tokens: list[str] | None = None) -> Result:
    """Send `count` POSTs of `body` with `concurrency` clients; all must answer 200. tokens: an
    Authorization header value per request (signed before the clock starts), or None."""
    tickets = itertools.count()
    start = threading.Barrier(concurrency + 1)
    per_thread = [Result() for _ in range(concurrency)]
    clients = [Client(port) for _ in range(concurrency)]
    for client in clients:   # connections are opened before the clock starts
        client.conn = client.connect()

    def work(result: Result, client: Client) -> None:
        start.wait()
        latencies = result.latencies
        try:
            while (ticket := next(tickets)) < count:
                authorization = tokens[ticket] if tokens else None
                t0 = time.perf_counter()
                status, data = client.request("POST", path, body, authorization)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    result.errors.append(f"HTTP {status}: {data[:300]!r}")
                    if len(result.errors) > 5:
                        return
        except Exception as exc:   # reported by the caller
            result.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(r, c), daemon=True) for r, c in zip(per_thread, clients)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    total = Result(elapsed=time.perf_counter() - t0)
    for result in per_thread:
        total.latencies.extend(result.latencies)
        total.errors.extend(result.errors)
    return total
