"""JSON in and out of the service with orjson: request bodies, answers, log lines."""
from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import JSONProvider

loads = orjson.loads          # raises orjson.JSONDecodeError, a ValueError
DecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; keys keep their order; what JSON cannot hold goes as str(). Integers beyond
    64 bits (which orjson refuses) are written by the standard library."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":")).encode()


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider (jsonify, returning a dict from a view) on orjson."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dumps(obj), mimetype="application/json")
