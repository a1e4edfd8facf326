"""The hazard log (safety/hazard-log.toml): read, checked and rated on the DCB0129 matrix, for the
guidance page the committee reads and for the test that every control's code and tests exist."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


class HazardLogError(ValueError):
    pass


@dataclass(frozen=True)
class Risk:
    severity: str
    likelihood: str
    rating: int
    label: str  # e.g. "2 Low"


@dataclass(frozen=True)
class Control:
    control: str
    code: tuple[str, ...]   # file::symbol
    tests: tuple[str, ...]  # pytest node ids


@dataclass(frozen=True)
class Hazard:
    id: str
    title: str
    causes: tuple[str, ...]
    effect: str
    harm: str
    initial: Risk
    residual: Risk
    controls: tuple[Control, ...]


@dataclass(frozen=True)
class HazardLog:
    meta: dict
    severities: tuple[str, ...]
    likelihoods: tuple[str, ...]
    grid: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]
    acceptable: int
    hazards: tuple[Hazard, ...]


def default_path(knowledge_dir: str = "") -> Path:
    """safety/hazard-log.toml beside the knowledge folder (CDS_KNOWLEDGE_DIR, else the repository's)."""
    root = Path(knowledge_dir).resolve().parent if knowledge_dir else Path(__file__).resolve().parent.parent
    return root / "safety" / "hazard-log.toml"


def load(path: Path | str | None = None) -> HazardLog:
    path = Path(path) if path else default_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HazardLogError(f"{path.name}: {exc}") from None
    matrix = data.get("matrix", {})
    severities, likelihoods = tuple(matrix.get("severities", ())), tuple(matrix.get("likelihoods", ()))
    grid = tuple(tuple(row) for row in matrix.get("grid", ()))
    labels = tuple(matrix.get("ratings", ()))
    if len(grid) != len(likelihoods) or any(len(row) != len(severities) for row in grid) or not labels:
        raise HazardLogError(f"{path.name}: matrix: the grid must have a row per likelihood and a column per severity")

    def risk(value, where: str) -> Risk:
        if not isinstance(value, dict) or value.get("severity") not in severities \
                or value.get("likelihood") not in likelihoods:
            raise HazardLogError(f"{path.name}: {where}: needs a severity of {severities} and a likelihood of "
                                 f"{likelihoods}")
        rating = grid[likelihoods.index(value["likelihood"])][severities.index(value["severity"])]
        return Risk(value["severity"], value["likelihood"], rating, labels[rating - 1])

    hazards = []
    for i, h in enumerate(data.get("hazards", [])):
        where = f"hazards[{i}]"
        for key in ("id", "title", "effect", "harm"):
            if not isinstance(h.get(key), str) or not h[key].strip():
                raise HazardLogError(f"{path.name}: {where}.{key}: missing")
        controls = []
        for j, c in enumerate(h.get("controls", [])):
            if not c.get("control") or not c.get("code") or not c.get("tests"):
                raise HazardLogError(f"{path.name}: {where}.controls[{j}]: needs control, code and tests")
            controls.append(Control(c["control"], tuple(c["code"]), tuple(c["tests"])))
        if not controls:
            raise HazardLogError(f"{path.name}: {where} ({h['id']}): no control")
        initial, residual = risk(h.get("initial"), f"{where}.initial"), risk(h.get("residual"), f"{where}.residual")
        hazards.append(Hazard(h["id"], h["title"], tuple(h.get("causes", ())), h["effect"], h["harm"],
                              initial, residual, tuple(controls)))
    if len({h.id for h in hazards}) != len(hazards):
        raise HazardLogError(f"{path.name}: hazards: duplicate id")
    return HazardLog(data.get("log", {}), severities, likelihoods, grid, labels,
                     int(matrix.get("acceptable", 2)), tuple(hazards))
