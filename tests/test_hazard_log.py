"""The hazard log (safety/hazard-log.toml): every control names code and tests that exist, the risks follow
the DCB0129 matrix, and the guidance site shows it to the committee."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

from markupsafe import escape

from cds_service import hazards

ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def defined(path: Path) -> frozenset[str]:
    """Names defined in a Python file: functions and classes, and Class::method / Class.method."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names |= {f"{node.name}::{item.name}", f"{node.name}.{item.name}"}
    return frozenset(names)


def missing(log: hazards.HazardLog, root: Path = ROOT) -> list[str]:
    """Every test node id or code reference of the log that does not exist."""
    found = []
    for h in log.hazards:
        for c in h.controls:
            for ref in (*c.tests, *c.code):
                file, _, name = ref.partition("::")
                path = root / file
                if not path.is_file() or name.split("[")[0] not in defined(path):
                    found.append(f"{h.id}: {ref}")
    return found


def test_every_control_names_code_and_tests_that_exist():
    log = hazards.load()
    assert len(log.hazards) >= 8
    assert missing(log) == []
    for h in log.hazards:
        assert all(t.startswith("tests/test_") and "::test_" in t for c in h.controls for t in c.tests), h.id


def test_a_hazard_naming_a_test_that_does_not_exist_is_found(tmp_path):
    text = hazards.default_path().read_text(encoding="utf-8").replace(
        "tests/test_knowledge.py::test_bad_rating_id", "tests/test_knowledge.py::test_no_such_test").replace(
        "cds_service/review.py::diff", "cds_service/review.py::no_such_function")
    (tmp_path / "hazard-log.toml").write_text(text, encoding="utf-8")
    assert missing(hazards.load(tmp_path / "hazard-log.toml")) == [
        "H01: tests/test_knowledge.py::test_no_such_test", "H01: cds_service/review.py::no_such_function"]


def test_every_residual_risk_is_acceptable_and_no_higher_than_before():
    log = hazards.load()
    for h in log.hazards:
        assert h.residual.rating <= log.acceptable, h.id
        assert h.residual.rating <= h.initial.rating, h.id
    h01 = log.hazards[0]
    assert (h01.initial.label, h01.residual.label) == ("3 Medium", "2 Low")  # Major x Medium, Major x Very low


def test_a_risk_off_the_matrix_is_refused(tmp_path):
    text = hazards.default_path().read_text(encoding="utf-8").replace(
        'initial = { severity = "Major", likelihood = "Medium" }', 'initial = { severity = "Bad", likelihood = "Medium" }', 1)
    (tmp_path / "hazard-log.toml").write_text(text, encoding="utf-8")
    with pytest.raises(hazards.HazardLogError, match=r"hazards\[0\].initial: needs a severity of"):
        hazards.load(tmp_path / "hazard-log.toml")


def test_the_guidance_site_shows_the_hazard_log(client):
    page = client.get("/guidance/hazard-log")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for h in hazards.load().hazards:
        assert f'<h2 id="{h.id}">{h.id}: {escape(h.title)}</h2>' in html
        for c in h.controls:
            assert all(f"<code>{t}</code>" in html for t in c.tests)
    assert "DCB0129" in html and "Residual risk" in html
    assert 'href="/guidance/hazard-log"' in client.get("/guidance/").get_data(as_text=True)
