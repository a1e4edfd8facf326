"""Reader of procedures.toml: each imaging procedure with its ratings per variant, radiation level,
texts for the card and the page, and the study to suggest instead; joined to its codes."""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from .model import RESULT_KINDS, SEXES, Procedure, Statement, VariantRating, normalise
from .scenario import Scenario
from .toml_file import TomlFile
from .valuesets import ValueSets


@dataclass(frozen=True)
class Procedures:
    by_id: Mapping[str, Procedure]
    by_code: Mapping[tuple[str, str], Procedure]  # (system key, normalised code) -> procedure


def read(f: TomlFile, scenario: Scenario, valuesets: ValueSets, valuesets_file: TomlFile) -> Procedures:
    variants = scenario.variants
    variant_by_id = {v.id: v for v in variants}
    procedures: dict[str, Procedure] = {}
    by_code: dict[tuple[str, str], Procedure] = {}
    for i, t in enumerate(f.get(f.data, "procedures", "", list)):
        pid = f.get(t, "id", f"procedures[{i}]")
        field = f"procedures[{pid}]"
        if pid in procedures:
            raise f.fail(field, "duplicate procedure id")
        if pid not in valuesets.procedures:
            raise valuesets_file.fail(f"procedures.{pid}", "missing: every procedure needs a code list")
        own_codes = valuesets.procedures[pid]
        level = f.get(t, "rrl", field, int, required=False)
        if level is not None and str(level) not in scenario.rrl:
            raise f.fail(f"{field}.rrl", f"unknown radiation level {level}")
        variant_ratings = []
        for vid, r in f.get(t, "ratings", field, dict, required=False, default={}).items():
            at = f"{field}.ratings.{vid}"
            if vid not in variant_by_id:
                raise f.fail(at, f"unknown variant {vid!r}")
            rating_id = f.one_of(r, "rating", at, scenario.ratings, "unknown rating {value!r}; known: {allowed}")
            source = f.one_of(r, "source", at, scenario.sources, "unknown source {value!r}")
            variant_ratings.append(VariantRating(variant_by_id[vid], scenario.ratings[rating_id], source))
        variant_ratings.sort(key=lambda vr: variants.index(vr.variant))
        for a in variant_ratings:
            for b in variant_ratings:
                overlap = "any" in (a.variant.sex, b.variant.sex) or a.variant.sex == b.variant.sex
                if overlap and a.rating != b.rating:
                    raise f.fail(f"{field}.ratings", f"variants {a.variant.id} and {b.variant.id} disagree")
        statements = []
        for j, st in enumerate(f.get(t, "statements", field, list, required=False, default=[])):
            at = f"{field}.statements[{j}]"
            sex = f.one_of(st, "sex", at, SEXES)
            statements.append(Statement(sex, f.summary(st, "summary", at), f.get(st, "detail", at)))
        results = f.get(t, "results", field, dict, required=False, default={})
        for kind, text in results.items():
            if kind not in RESULT_KINDS or not isinstance(text, str):
                raise f.fail(f"{field}.results.{kind}", f"expected a text for one of {', '.join(RESULT_KINDS)}")
        order_code = {}
        for system, code in f.get(t, "order_code", field, dict, required=False, default={}).items():
            known = [c for c in own_codes if c.system == system and c.code == code]
            if not known:
                raise f.fail(f"{field}.order_code.{system}", f"{code!r} is not in valuesets.toml procedures.{pid}")
            order_code[system] = known[0]
        rated = bool(variant_ratings)
        procedure = Procedure(
            id=pid, label=f.get(t, "label", field),
            rrl=scenario.rrl[str(level)] if level is not None else None,
            summary=f.summary(t, "summary", field, required=rated),
            rationale=f.get(t, "rationale", field, required=rated),
            alternative=f.get(t, "alternative", field, required=False),
            order_code=MappingProxyType(order_code), results=MappingProxyType(dict(results)),
            pitfalls=f.strings(t, "pitfalls", field),
            ratings=tuple(variant_ratings), statements=tuple(statements),
            why=f.get(t, "why", field, required=rated), must_see=f.get(t, "must_see", field, required=False),
            note=f.get(t, "note", field, required=False), codes=own_codes)
        if rated and procedure.rrl is None:
            raise f.fail(f"{field}.rrl", "missing: a rated procedure needs its radiation level")
        procedures[pid] = procedure
        for code in own_codes:
            key = (code.system, normalise(code.system, code.code))
            if key in by_code:
                raise valuesets_file.fail(f"procedures.{pid}", f"code {code.code} is also in {by_code[key].id}")
            by_code[key] = procedure
    for pid in valuesets.procedures:
        if pid not in procedures:
            raise valuesets_file.fail(f"procedures.{pid}", "no such procedure in procedures.toml")
    for procedure in procedures.values():
        if procedure.alternative is None:
            continue
        alternative = procedures.get(procedure.alternative)
        field = f"procedures[{procedure.id}].alternative"
        if alternative is None:
            raise f.fail(field, f"unknown procedure {procedure.alternative!r}")
        if not alternative.order_code or not alternative.ratings:
            raise f.fail(field, f"{alternative.id} needs order_code and a rating to be suggested")
    return Procedures(procedures, by_code)
