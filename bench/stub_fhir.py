"""A stub FHIR R4 server on loopback for the no-prefetch shape.

    python -m bench.stub_fhir --port 8089    # base URL http://127.0.0.1:8089/fhir

Serves the benchmark patient's Patient/{id} and Condition?patient={id} (a searchset Bundle of
the typical record, one page), HTTP/1.1 with keep-alive so the service's pooled session reuses
its connections. GET /__stats answers how many FHIR reads it served.
"""
from __future__ import annotations

import argparse
import json
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from bench import shapes

FHIR_JSON = "application/fhir+json"


class Stub:
    def __init__(self, base: str, today: date, record_size: int = 10):
        self.patient = json.dumps(shapes.patient(today)).encode()
        self.conditions = json.dumps(shapes.searchset(shapes.conditions(record_size, today), base)).encode()
        self.lock = threading.Lock()
        self.served = 0


def handler_for(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive
        disable_nagle_algorithm = True   # no delayed-ACK stall between headers and body

        def log_message(self, format, *args):  # quiet: the benchmark measures, it does not log
            pass

        def send(self, status: int, body: bytes, content_type: str = FHIR_JSON) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def not_found(self, what: str) -> None:
            outcome = {"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": "not-found", "diagnostics": what}]}
            self.send(404, json.dumps(outcome).encode())

        def do_GET(self):
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path == "/__stats":
                with stub.lock:
                    served = stub.served
                return self.send(200, json.dumps({"served": served}).encode(), "application/json")
            if parts.path == "/":
                return self.send(200, b'{"status":"ok"}', "application/json")
            if parts.path == f"/fhir/Patient/{shapes.PATIENT_ID}":
                body = stub.patient
            elif parts.path == "/fhir/Condition" and query.get("patient") in (
                    [shapes.PATIENT_ID], [f"Patient/{shapes.PATIENT_ID}"]):
                body = stub.conditions
            else:
                return self.not_found(f"{parts.path} is not on this stub")
            with stub.lock:
                stub.served += 1
            self.send(200, body)

    return Handler


def serve(port: int) -> None:
    base = f"http://127.0.0.1:{port}/fhir"
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(Stub(base, date.today())))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
