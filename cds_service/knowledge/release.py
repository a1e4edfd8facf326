"""Reader of release.toml: the knowledge's release version, and the digest of the folder's files."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .model import Release
from .toml_file import TomlFile

FILE = "release.toml"
VERSION = re.compile(r"\d+(\.\d+){1,3}([-.][0-9A-Za-z.-]+)?")


def digest(directory: Path) -> str:
    """SHA-256 over each .toml file of the folder, in name order: its name, then the SHA-256 of its bytes."""
    total = hashlib.sha256()
    for path in sorted(directory.glob("*.toml")):
        total.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()


def read(directory: Path) -> Release:
    f = TomlFile(directory, FILE)
    version = f.get(f.data, "version", "")
    if not VERSION.fullmatch(version):
        raise f.fail("version", f"{version!r} is not a release version such as 1.0.0")
    return Release(version, digest(directory))
