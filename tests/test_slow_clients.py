"""Slow and half-open clients against gunicorn as the image runs it (issue 20): they cost a socket
each, not a thread, and have a deadline; gunicorn's own errors are JSON."""
import socket
import time

import pytest
import requests

from test_serving import EXAMPLE, SERVICE, running

HALF_OPEN = 100
READ_TIMEOUT = 2  # GUNICORN_READ_TIMEOUT for these tests (default 10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(tmp_path_factory.mktemp("slow"), GUNICORN_READ_TIMEOUT=str(READ_TIMEOUT),
                 CDS_MAX_BODY_BYTES="200000") as served:
        yield served


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def answer(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_hundred_half_open_connections_do_not_delay_a_signed_call(server):
    base, trusted, _ = server
    half_open = []
    try:
        for n in range(HALF_OPEN):  # a partial request line and headers, then nothing
            sock = connect(base)
            sock.sendall(b"POST " + SERVICE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
            half_open.append(sock)
        for _ in range(5):  # each within the client's 5 s (they waited the whole 60 s before)
            assert requests.get(f"{base}/health", timeout=5).status_code == 200
            response = requests.post(base + SERVICE, json=EXAMPLE, headers=trusted.headers(base + SERVICE), timeout=5)
            assert response.status_code == 200 and response.json()["cards"][0]["indicator"] == "warning"
    finally:
        for sock in half_open:
            sock.close()


def test_a_request_that_stops_half_way_gets_a_json_408_after_the_read_deadline(server):
    base, _, _ = server
    with connect(base) as sock:
        sock.sendall(b"POST " + SERVICE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"hook\": ")
        received = answer(sock)  # closed by the server: the socket's own 10 s timeout never fires
    assert received.startswith(b"HTTP/1.1 408") and b'"resourceType": "OperationOutcome"' in received


def test_gunicorns_own_errors_are_json(server):
    base, _, _ = server
    with connect(base) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n")
        received = answer(sock)
    assert received.split(b" ")[1] in (b"400", b"431")
    assert b"Content-Type: application/json" in received and b"OperationOutcome" in received


def test_a_chunked_body_over_the_limit_is_413(server):
    base, trusted, _ = server
    body = (b'{"hook": "order-select", "padding": "' + b"a" * 300_000 + b'"}')
    response = requests.post(base + SERVICE, data=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                             headers={**trusted.headers(base + SERVICE), "Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 413 and response.json()["resourceType"] == "OperationOutcome"
