"""The floor: the least a Flask app under the same gunicorn settings can do with a hook call.

It reads and parses the JSON body as the service does and answers no cards. Whatever the
service spends above this is the service's own work.

    gunicorn -c gunicorn.conf.py bench.floor:app
"""
from __future__ import annotations

import json

from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def up():
    return {"status": "ok"}


@app.post("/cds-services/<service_id>")
def call_service(service_id: str):
    json.loads(request.get_data(cache=False))
    return {"cards": []}
