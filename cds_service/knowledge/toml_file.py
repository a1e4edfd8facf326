"""A parsed TOML file of knowledge/ that reports every error with the file name and the field path."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping

from .model import SUMMARY_LIMIT, KnowledgeError


class TomlFile:
    def __init__(self, directory: Path, name: str):
        self.name = name
        path = directory / name
        try:
            with path.open("rb") as handle:
                self.data = tomllib.load(handle)
        except FileNotFoundError:
            raise KnowledgeError(f"{name}: file not found in {directory.name}/") from None
        except tomllib.TOMLDecodeError as exc:
            raise KnowledgeError(f"{name}: not valid TOML: {exc}") from None

    def fail(self, field: str, message: str) -> KnowledgeError:
        return KnowledgeError(f"{self.name}: {field}: {message}")

    def get(self, table: Mapping[str, Any], key: str, field: str, kind: type | tuple = str,
            required: bool = True, default: Any = None) -> Any:
        if key not in table:
            if required:
                raise self.fail(f"{field}.{key}" if field else key, "missing")
            return default
        value = table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{field}.{key}" if field else key, f"expected {_kind_name(kind)}, got {value!r}")
        if isinstance(value, str) and not value.strip():
            raise self.fail(f"{field}.{key}" if field else key, "empty")
        return value

    def strings(self, table: Mapping[str, Any], key: str, field: str) -> tuple[str, ...]:
        values = self.get(table, key, field, list, required=False, default=[])
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                raise self.fail(f"{field}.{key}[{i}]", "expected a non-empty string")
        return tuple(values)

    def summary(self, table: Mapping[str, Any], key: str, field: str, required: bool = True) -> str | None:
        text = self.get(table, key, field, required=required)
        if text is not None and len(text) >= SUMMARY_LIMIT:
            raise self.fail(f"{field}.{key}", f"{len(text)} characters; a card summary must be under {SUMMARY_LIMIT}")
        return text

    def one_of(self, table: Mapping[str, Any], key: str, field: str, allowed: tuple[str, ...] | Mapping,
               message: str = "{value!r} is not one of {allowed}") -> str:
        """A string that must be one of `allowed`; else the error `message` (with {value!r} and {allowed})."""
        value = self.get(table, key, field)
        if value not in allowed:
            raise self.fail(f"{field}.{key}", message.format(value=value, allowed=", ".join(allowed)))
        return value


def _kind_name(kind: type | tuple) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)
