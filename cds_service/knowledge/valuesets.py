"""Reader of valuesets.toml: the code systems, the diagnosis code lists with their indexes for
the look-ups, the words that are evidence in text, and each procedure's code list."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from .model import CODE_STATUSES, DIAGNOSIS_KINDS, PREFIX_KEY, PREFIX_SYSTEMS, Code, CodeList, DiagnosisMatch, \
    TextStarts, normalise, phrases
from .toml_file import TomlFile


@dataclass(frozen=True)
class ValueSets:
    system_keys: Mapping[str, str]   # any accepted URI -> key
    system_uris: Mapping[str, str]   # key -> canonical URI
    system_names: Mapping[str, str]  # key -> human name
    diagnoses: Mapping[str, CodeList]
    diagnosis_codes: Mapping[tuple[str, str], DiagnosisMatch]
    diagnosis_prefixes: Mapping[tuple[str, str], tuple[tuple[str, DiagnosisMatch], ...]]
    text_kinds: Mapping[str, re.Pattern]
    neutral: re.Pattern
    procedures: Mapping[str, tuple[Code, ...]]  # procedure id -> its codes
    text_starts: TextStarts | None  # the first words of all text evidence; None: cannot prefilter


def read(f: TomlFile) -> ValueSets:
    v = f.data
    systems = f.get(v, "systems", "", dict)
    system_keys: dict[str, str] = {}
    for key in systems:
        for uri in f.strings(systems, key, "systems"):
            system_keys[uri] = key
    system_uris = {key: f.get(f.get(v, "system_uri", "", dict), key, "system_uri") for key in systems}
    names_table = f.get(v, "system_names", "", dict, required=False, default={})
    system_names = {key: names_table.get(key, key) for key in systems}

    def codes(table: Mapping[str, Any], field: str) -> tuple[Code, ...]:
        result = []
        for i, entry in enumerate(f.get(table, "codes", field, list)):
            at = f"{field}.codes[{i}]"
            system = f.one_of(entry, "system", at, systems, "unknown system {value!r}")
            status = f.one_of(entry, "status", at, CODE_STATUSES,
                              f"{{value!r}}: UNVERIFIED codes are not matched; use one of {CODE_STATUSES}")
            code = f.get(entry, "code", at)
            if code.endswith("*") and system not in PREFIX_SYSTEMS:
                raise f.fail(f"{at}.code", f"prefix codes (ending in *) are only for {', '.join(PREFIX_SYSTEMS)}")
            result.append(Code(system, code, f.get(entry, "display", at), status))
        return tuple(result)

    diagnoses: dict[str, CodeList] = {}
    diagnosis_codes: dict[tuple[str, str], DiagnosisMatch] = {}
    diagnosis_prefixes: dict[tuple[str, str], list] = {}
    for group, table in f.get(v, "diagnoses", "", dict).items():
        field = f"diagnoses.{group}"
        kind = f.one_of(table, "kind", field, DIAGNOSIS_KINDS)
        group_codes = codes(table, field)
        diagnoses[group] = CodeList(group, f.get(table, "description", field, required=False, default=group),
                                    kind, group_codes)
        for code in group_codes:
            match = DiagnosisMatch(kind, code)
            normal = normalise(code.system, code.code)
            if normal.endswith("*"):
                prefix = normal[:-1]
                if len(prefix) < PREFIX_KEY:
                    raise f.fail(field, f"prefix code {code.code} is shorter than an ICD-10 category")
                diagnosis_prefixes.setdefault((code.system, prefix[:PREFIX_KEY]), []).append((prefix, match))
            elif (code.system, normal) in diagnosis_codes:
                raise f.fail(field, f"code {code.code} is listed twice")
            else:
                diagnosis_codes[(code.system, normal)] = match

    text_table = f.get(v, "text_evidence", "", dict)
    neutral_words = f.strings(text_table, "neutral", "text_evidence")
    neutral = phrases(neutral_words)
    text_kinds, all_words, all_acronyms = {}, list(neutral_words), []
    for kind, table in text_table.items():
        if kind == "neutral":
            continue
        field = f"text_evidence.{kind}"
        if kind not in DIAGNOSIS_KINDS or not isinstance(table, dict):
            raise f.fail(field, f"expected a table named for one of {', '.join(DIAGNOSIS_KINDS)}")
        words, acronyms = f.strings(table, "words", field), f.strings(table, "acronyms", field)
        text_kinds[kind] = phrases(words, acronyms)
        all_words += words
        all_acronyms += acronyms

    procedures = {pid: codes(table, f"procedures.{pid}") for pid, table in f.get(v, "procedures", "", dict).items()}
    return ValueSets(system_keys, system_uris, system_names, diagnoses, diagnosis_codes,
                     {k: tuple(v) for k, v in diagnosis_prefixes.items()}, text_kinds, neutral, procedures,
                     TextStarts.of(all_words, all_acronyms))
