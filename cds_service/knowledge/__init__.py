"""Load and validate the clinical knowledge in knowledge/ into typed, immutable objects.

Each file of knowledge/ has its own reader (scenario, valuesets, procedures, policies); load()
joins them. Start-up fails with KnowledgeError naming the file and the field when something is
wrong, so a typo in a rating or a missing code list never reaches a clinician.
"""
from __future__ import annotations

import re

from pathlib import Path
from types import MappingProxyType

from . import episode as _episode, policies as _policies, procedures as _procedures, release as _release, \
    scenario as _scenario, valuesets as _valuesets
from .model import (CODE_STATUSES, DIAGNOSIS_KINDS, PREFIX_KEY, PREFIX_SYSTEMS, RESULT_KINDS, SEXES,
                    SUMMARY_LIMIT, Code, CodeList, DiagnosisMatch, Knowledge, KnowledgeError, OutOfScopeReason,
                    Policies, Procedure, RadiationLevel, Rating, Release, Source, Statement, Topic, Variant,
                    VariantRating, default_directory, normalise, phrases)
from .toml_file import TomlFile

__all__ = ["load", "Knowledge", "KnowledgeError", "TomlFile", "default_directory", "normalise", "phrases",
           "Code", "CodeList", "DiagnosisMatch", "OutOfScopeReason", "Policies", "Procedure", "RadiationLevel",
           "Rating", "Release", "Source", "Statement", "Topic", "Variant", "VariantRating", "CODE_STATUSES",
           "DIAGNOSIS_KINDS", "PREFIX_KEY", "PREFIX_SYSTEMS", "RESULT_KINDS", "SEXES", "SUMMARY_LIMIT"]


def load(directory: Path | str | None = None) -> Knowledge:
    directory = Path(directory) if directory else default_directory()
    if not directory.is_dir():
        raise KnowledgeError(f"knowledge directory {directory.name!r} not found (set CDS_KNOWLEDGE_DIR)")
    files = {name: TomlFile(directory, f"{name}.toml")
             for name in ("scenario", "valuesets", "procedures", "policies", "episode", "hpo_lexicon")}
    scenario = _scenario.read(files["scenario"])
    valuesets = _valuesets.read(files["valuesets"])
    procedures = _procedures.read(files["procedures"], scenario, valuesets, files["valuesets"])
    policies = _policies.read(files["policies"])
    text = files["valuesets"].data.get("text_evidence", {}).get("all", {})
    indication = files["policies"].data.get("indication", {})
    episode = _episode.read(files["episode"], files["hpo_lexicon"], [*text.get("words", []), *text.get("acronyms", [])],
                            [*indication.get("staging_words", []), *indication.get("staging_acronyms", [])])
    release = _release.read(directory)
    return Knowledge(
        topic=scenario.topic, sources=MappingProxyType({sid: s.title for sid, s in scenario.sources.items()}),
        ratings=MappingProxyType(scenario.ratings), variants=scenario.variants,
        procedures=MappingProxyType(procedures.by_id), texts=MappingProxyType(scenario.texts), policies=policies,
        system_uris=MappingProxyType(valuesets.system_uris), system_names=MappingProxyType(valuesets.system_names),
        acr_category_system=scenario.acr_category_system,
        source_details=MappingProxyType(scenario.sources),
        rrl=MappingProxyType({r.level: r for r in scenario.rrl.values()}),
        diagnosis_lists=MappingProxyType(valuesets.diagnoses),
        _system_keys=MappingProxyType(valuesets.system_keys),
        _procedure_codes=MappingProxyType(procedures.by_code),
        _diagnosis_codes=MappingProxyType(valuesets.diagnosis_codes),
        _diagnosis_prefixes=MappingProxyType(valuesets.diagnosis_prefixes),
        _text_kinds=MappingProxyType(valuesets.text_kinds),
        _neutral=valuesets.neutral,
        _any_text=re.compile("|".join(f"(?:{p.pattern})" for p in (valuesets.neutral, *valuesets.text_kinds.values()))),
        _text_starts=valuesets.text_starts,
        episode=episode,
        release=release,
    )
