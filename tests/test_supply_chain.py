"""A reproducible image (issue 20): the runtime dependencies hash-pinned in requirements.lock, which
matches pyproject.toml and is what the Dockerfile installs; the base image pinned; an SBOM made by a
command. Regenerate the lock with the command in its header after changing pyproject.toml."""
from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = (ROOT / "requirements.lock").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, tuple[str, list[str]]]:
    """{name: (version, hashes)} of the lock; every requirement line is `name==version` with hashes."""
    found = {}
    for block in re.split(r"\n(?=[a-z0-9])", "\n" + LOCK, flags=re.I):
        line = block.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert m, f"not an exact pin: {line.splitlines()[0]}"
        found[canonicalize_name(m[1])] = (m[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return found


def test_every_runtime_and_build_requirement_is_pinned_within_its_range_with_hashes():
    locked = pins()
    wanted = [Requirement(r) for r in PROJECT["project"]["dependencies"] + PROJECT["project"]["optional-dependencies"]
              ["postgres"] + PROJECT["build-system"]["requires"]]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is in pyproject.toml but not in requirements.lock"
        assert Version(locked[name][0]) in requirement.specifier, f"{name}=={locked[name][0]} is outside {requirement}"
    assert all(hashes for _, hashes in locked.values()), "a pin without --hash"
    test_only = {canonicalize_name(Requirement(r).name) for r in PROJECT["project"]["optional-dependencies"]["test"]}
    assert not test_only & set(locked), "test tools do not belong in the image"


def test_the_image_installs_the_lock_with_hashes_and_nothing_else():
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$", DOCKERFILE, re.M), \
        "the base image must be an exact release (or a digest)"
    installs = re.findall(r"^RUN pip install (.*)$", DOCKERFILE, re.M)
    assert installs == ["--no-deps --require-hashes -r requirements.lock",
                        "--no-deps --no-build-isolation --no-index ."]
    assert "CDS_DATABASE_URL" not in DOCKERFILE  # no SQLite file inside the container by default


def test_the_sbom_command_lists_every_locked_package(tmp_path):
    out = tmp_path / "sbom.cdx.json"
    subprocess.run(["bash", str(ROOT / ".ci" / "sbom.sh"), str(out)], check=True, capture_output=True, text=True)
    sbom = json.loads(out.read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["component"]["name"] == PROJECT["project"]["name"]
    listed = {canonicalize_name(c["name"]): c for c in sbom["components"]}
    locked = pins()
    assert {name: c["version"] for name, c in listed.items()} == {name: v for name, (v, _) in locked.items()}
    for name, component in listed.items():
        assert component["purl"] == f"pkg:pypi/{name}@{locked[name][0]}"
        hashes = {h["content"] for ref in component.get("externalReferences", []) for h in ref.get("hashes", [])}
        assert hashes == set(locked[name][1])
