"""Load and validate the clinical knowledge in knowledge/ into typed, immutable objects.

Start-up fails with KnowledgeError naming the file and the field when something is wrong,
so a typo in a rating or a missing code list never reaches a clinician.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

SUMMARY_LIMIT = 140  # CDS Hooks: summary SHALL be under 140 characters
SEXES = ("any", "male", "female")
RESULT_KINDS = ("normal", "negative", "positive", "indeterminate")
DIAGNOSIS_KINDS = ("all", "all-remission", "all-relapse", "excluded", "symptom", "therapy")
PREFIX_SYSTEMS = ("icd10", "atc")  # hierarchical codes: a code ending in "*" matches its children
PREFIX_KEY = 3  # ICD-10 prefix codes are indexed by their category (first three characters)
CODE_STATUSES = ("VERIFIED", "VERIFIED-moderate", "judgement", "ours")


class KnowledgeError(ValueError):
    """The knowledge base is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Code:
    system: str  # key of [systems] in valuesets.toml: snomed, icd10, cpt, loinc
    code: str
    display: str
    status: str


@dataclass(frozen=True)
class Rating:
    id: str
    label: str
    indicator: str
    pama: str


@dataclass(frozen=True)
class RadiationLevel:
    symbol: str
    peds_range: str

    def __str__(self) -> str:
        return f"{self.symbol} {self.peds_range}"


@dataclass(frozen=True)
class Variant:
    id: str
    label: str
    sex: str
    source: str
    inclusion: tuple[str, ...]
    exclusion: tuple[str, ...]


@dataclass(frozen=True)
class VariantRating:
    variant: Variant
    rating: Rating
    source: str


@dataclass(frozen=True)
class Statement:
    """A fact the sources state without an ACR rating."""
    sex: str
    summary: str
    detail: str


@dataclass(frozen=True)
class Procedure:
    id: str
    label: str
    rrl: RadiationLevel | None
    summary: str | None
    rationale: str | None
    alternative: str | None
    order_code: Mapping[str, Code]
    results: Mapping[str, str]
    pitfalls: tuple[str, ...]
    ratings: tuple[VariantRating, ...]
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class OutOfScopeReason:
    id: str
    summary: str
    detail: str
    explain: bool  # whether an info card may say so


@dataclass(frozen=True)
class Policies:
    max_age_years: int
    new_within_days: int
    absent_verification_counts_as_confirmed: bool
    absent_clinical_status_counts_as_active: bool
    order_reason_can_establish_all: bool
    staging_text: re.Pattern           # a reason text that names the leukemia or its staging
    not_given_statuses: frozenset[str]  # MedicationRequest statuses that are no evidence of therapy
    withhold_when_unread: frozenset[str]  # resource types whose unread part withholds the rating
    withheld_summary: str
    withheld_detail: str
    explain_out_of_scope: bool
    out_of_scope_summary: str
    out_of_scope: Mapping[str, OutOfScopeReason]  # in priority order
    override_system: str
    override_reasons: tuple[Code, ...]
    pama_qcdsm: str


@dataclass(frozen=True)
class DiagnosisMatch:
    kind: str
    code: Code


@dataclass(frozen=True)
class Topic:
    title: str
    label: str
    url: str
    topic_system: str
    scope_label: str


@dataclass(frozen=True)
class Knowledge:
    topic: Topic
    sources: Mapping[str, str]
    ratings: Mapping[str, Rating]
    variants: tuple[Variant, ...]
    procedures: Mapping[str, Procedure]
    texts: Mapping[str, str]
    policies: Policies
    system_uris: Mapping[str, str]   # key -> canonical URI
    system_names: Mapping[str, str]  # key -> human name
    _system_keys: Mapping[str, str]  # any accepted URI -> key
    _procedure_codes: Mapping[tuple[str, str], Procedure]
    _diagnosis_codes: Mapping[tuple[str, str], DiagnosisMatch]
    _diagnosis_prefixes: Mapping[tuple[str, str], tuple[tuple[str, DiagnosisMatch], ...]]  # by first 3 chars
    _text_kinds: Mapping[str, re.Pattern]  # kind -> words that are evidence of it in text
    _neutral: re.Pattern                   # phrases removed from text before matching
    _any_text: re.Pattern                  # any of the kinds' words: most texts name none, one search says so

    # -- code look-ups (the hot path: plain dict reads) --------------------------------
    def system_key(self, uri: Any) -> str | None:
        return self._system_keys.get(uri) if isinstance(uri, str) else None

    def procedure_for(self, system: Any, code: Any) -> Procedure | None:
        """The procedure group a coding (system URI, code) belongs to, if any."""
        key = self.system_key(system)
        if key is None or not isinstance(code, str):
            return None
        return self._procedure_codes.get((key, normalise(key, code)))

    def diagnosis_for(self, system: Any, code: Any) -> DiagnosisMatch | None:
        """What a coding (system URI, code) means for the scenario (ALL, excluded, symptom, therapy), if anything."""
        key = self.system_key(system)
        if key is None or not isinstance(code, str):
            return None
        return self._diagnosis(key, normalise(key, code))

    def diagnosis_in_any_system(self, code: Any, systems: Iterable[str]) -> DiagnosisMatch | None:
        """The meaning of a code whose system is missing or unknown, trying each of `systems` (the
        vocabularies the element is coded in; e.g. ICD-10-CM L01.00 and ATC L01 share a form)."""
        if isinstance(code, (int, float)) and not isinstance(code, bool):
            code = str(code)
        if not isinstance(code, str) or not code.strip():
            return None
        for key in systems:
            match = self._diagnosis(key, normalise(key, code))
            if match:
                return match
        return None

    def text_evidence(self, text: Any) -> list[tuple[str, str]]:
        """(kind, words) for each kind of evidence the text names; text only ever takes a child out."""
        if not isinstance(text, str) or not text:
            return []
        text = self._neutral.sub(" ", text)
        if not self._any_text.search(text):
            return []
        return [(kind, found.group(0)) for kind, pattern in self._text_kinds.items() if (found := pattern.search(text))]

    def _diagnosis(self, key: str, code: str) -> DiagnosisMatch | None:
        match = self._diagnosis_codes.get((key, code))
        if match:
            return match
        for prefix, candidate in self._diagnosis_prefixes.get((key, code[:PREFIX_KEY]), ()):
            if code.startswith(prefix):
                return candidate
        return None

    def with_overrides(self, new_within_days: int | None = None, pama_qcdsm: str | None = None) -> "Knowledge":
        policies = self.policies
        if new_within_days is not None:
            policies = replace(policies, new_within_days=new_within_days)
        if pama_qcdsm:
            policies = replace(policies, pama_qcdsm=pama_qcdsm)
        return replace(self, policies=policies)


def normalise(system_key: str, code: str) -> str:
    code = code.strip()
    return code.replace(".", "").upper() if system_key == "icd10" else code


def phrases(words: tuple[str, ...], acronyms: tuple[str, ...] = ()) -> re.Pattern:
    """One pattern for whole words and phrases (any case, any spacing) and acronyms (exact case)."""
    alternatives = [r"(?i:" + "|".join(r"\s+".join(map(re.escape, w.split())) for w in words) + ")"] if words else []
    alternatives += [re.escape(a) for a in acronyms]
    if not alternatives:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])")


def default_directory() -> Path:
    return Path(__file__).resolve().parent.parent / "knowledge"


# ---------------------------------------------------------------------------------------
# Loading


class _File:
    """A parsed TOML file that reports errors with the file name and the field path."""

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


def _kind_name(kind: type | tuple) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def load(directory: Path | str | None = None) -> Knowledge:
    directory = Path(directory) if directory else default_directory()
    if not directory.is_dir():
        raise KnowledgeError(f"knowledge directory {directory.name!r} not found (set CDS_KNOWLEDGE_DIR)")
    scenario = _File(directory, "scenario.toml")
    valuesets = _File(directory, "valuesets.toml")
    procedures_file = _File(directory, "procedures.toml")
    policies_file = _File(directory, "policies.toml")

    # -- scenario ------------------------------------------------------------------------
    s = scenario.data
    topic_table = scenario.get(s, "topic", "", dict)
    topic = Topic(*(scenario.get(topic_table, k, "topic") for k in
                    ("title", "label", "url", "topic_system", "scope_label")))
    sources = {sid: scenario.get(t, "title", f"sources.{sid}")
               for sid, t in scenario.get(s, "sources", "", dict).items()}
    ratings = {}
    for rid, t in scenario.get(s, "ratings", "", dict).items():
        field = f"ratings.{rid}"
        indicator = scenario.get(t, "indicator", field)
        if indicator not in ("info", "warning", "critical"):
            raise scenario.fail(f"{field}.indicator", f"{indicator!r} is not info, warning or critical")
        pama = scenario.get(t, "pama", field)
        if pama not in ("appropriate", "not-appropriate", "no-criteria-apply"):
            raise scenario.fail(f"{field}.pama", f"{pama!r} is not a pama-rating code")
        ratings[rid] = Rating(rid, scenario.get(t, "label", field), indicator, pama)
    rrl = {key: RadiationLevel(scenario.get(t, "symbol", f"rrl.{key}"), scenario.get(t, "peds_range", f"rrl.{key}"))
           for key, t in scenario.get(s, "rrl", "", dict).items()}
    variants = []
    for i, t in enumerate(scenario.get(s, "variants", "", list)):
        field = f"variants[{i}]"
        sex = scenario.get(t, "sex", field)
        if sex not in SEXES:
            raise scenario.fail(f"{field}.sex", f"{sex!r} is not one of {', '.join(SEXES)}")
        source = scenario.get(t, "source", field)
        if source not in sources:
            raise scenario.fail(f"{field}.source", f"unknown source {source!r}")
        variants.append(Variant(scenario.get(t, "id", field), scenario.get(t, "label", field), sex, source,
                                scenario.strings(t, "inclusion", field), scenario.strings(t, "exclusion", field)))
    variant_by_id = {v.id: v for v in variants}
    if len(variant_by_id) != len(variants):
        raise scenario.fail("variants", "duplicate variant id")
    texts_table = scenario.get(s, "texts", "", dict)
    texts = {k: scenario.get(texts_table, k, "texts") for k in texts_table}

    # -- value sets ----------------------------------------------------------------------
    v = valuesets.data
    systems = valuesets.get(v, "systems", "", dict)
    system_keys: dict[str, str] = {}
    for key, uris in systems.items():
        for uri in valuesets.strings(systems, key, "systems"):
            system_keys[uri] = key
    system_uris = {key: valuesets.get(valuesets.get(v, "system_uri", "", dict), key, "system_uri") for key in systems}
    names_table = valuesets.get(v, "system_names", "", dict, required=False, default={})
    system_names = {key: names_table.get(key, key) for key in systems}

    def codes(table: Mapping[str, Any], field: str) -> list[Code]:
        result = []
        for i, entry in enumerate(valuesets.get(table, "codes", field, list)):
            f = f"{field}.codes[{i}]"
            system = valuesets.get(entry, "system", f)
            if system not in systems:
                raise valuesets.fail(f"{f}.system", f"unknown system {system!r}")
            status = valuesets.get(entry, "status", f)
            if status not in CODE_STATUSES:
                raise valuesets.fail(f"{f}.status", f"{status!r}: UNVERIFIED codes are not matched; use one of {CODE_STATUSES}")
            code = valuesets.get(entry, "code", f)
            if code.endswith("*") and system not in PREFIX_SYSTEMS:
                raise valuesets.fail(f"{f}.code", f"prefix codes (ending in *) are only for {', '.join(PREFIX_SYSTEMS)}")
            result.append(Code(system, code, valuesets.get(entry, "display", f), status))
        return result

    diagnosis_codes: dict[tuple[str, str], DiagnosisMatch] = {}
    diagnosis_prefixes: dict[tuple[str, str], list] = {}
    for group, table in valuesets.get(v, "diagnoses", "", dict).items():
        field = f"diagnoses.{group}"
        kind = valuesets.get(table, "kind", field)
        if kind not in DIAGNOSIS_KINDS:
            raise valuesets.fail(f"{field}.kind", f"{kind!r} is not one of {', '.join(DIAGNOSIS_KINDS)}")
        for code in codes(table, field):
            match = DiagnosisMatch(kind, code)
            normal = normalise(code.system, code.code)
            if normal.endswith("*"):
                prefix = normal[:-1]
                if len(prefix) < PREFIX_KEY:
                    raise valuesets.fail(field, f"prefix code {code.code} is shorter than an ICD-10 category")
                diagnosis_prefixes.setdefault((code.system, prefix[:PREFIX_KEY]), []).append((prefix, match))
            elif (code.system, normal) in diagnosis_codes:
                raise valuesets.fail(field, f"code {code.code} is listed twice")
            else:
                diagnosis_codes[(code.system, normal)] = match

    text_table = valuesets.get(v, "text_evidence", "", dict)
    neutral = phrases(valuesets.strings(text_table, "neutral", "text_evidence"))
    text_kinds = {}
    for kind, table in text_table.items():
        if kind == "neutral":
            continue
        field = f"text_evidence.{kind}"
        if kind not in DIAGNOSIS_KINDS or not isinstance(table, dict):
            raise valuesets.fail(field, f"expected a table named for one of {', '.join(DIAGNOSIS_KINDS)}")
        text_kinds[kind] = phrases(valuesets.strings(table, "words", field), valuesets.strings(table, "acronyms", field))

    procedure_codes_table = valuesets.get(v, "procedures", "", dict)

    # -- procedures ----------------------------------------------------------------------
    procedures: dict[str, Procedure] = {}
    procedure_codes: dict[tuple[str, str], Procedure] = {}
    p_file = procedures_file
    for i, t in enumerate(p_file.get(p_file.data, "procedures", "", list)):
        field = f"procedures[{i}]"
        pid = p_file.get(t, "id", field)
        field = f"procedures[{pid}]"
        if pid in procedures:
            raise p_file.fail(field, "duplicate procedure id")
        if pid not in procedure_codes_table:
            raise valuesets.fail(f"procedures.{pid}", "missing: every procedure needs a code list")
        own_codes = codes(procedure_codes_table[pid], f"procedures.{pid}")
        level = p_file.get(t, "rrl", field, int, required=False)
        if level is not None and str(level) not in rrl:
            raise p_file.fail(f"{field}.rrl", f"unknown radiation level {level}")
        variant_ratings = []
        for vid, r in p_file.get(t, "ratings", field, dict, required=False, default={}).items():
            f = f"{field}.ratings.{vid}"
            if vid not in variant_by_id:
                raise p_file.fail(f, f"unknown variant {vid!r}")
            rating_id = p_file.get(r, "rating", f)
            if rating_id not in ratings:
                raise p_file.fail(f"{f}.rating", f"unknown rating {rating_id!r}; known: {', '.join(ratings)}")
            source = p_file.get(r, "source", f)
            if source not in sources:
                raise p_file.fail(f"{f}.source", f"unknown source {source!r}")
            variant_ratings.append(VariantRating(variant_by_id[vid], ratings[rating_id], source))
        variant_ratings.sort(key=lambda vr: variants.index(vr.variant))
        for a in variant_ratings:
            for b in variant_ratings:
                overlap = "any" in (a.variant.sex, b.variant.sex) or a.variant.sex == b.variant.sex
                if overlap and a.rating != b.rating:
                    raise p_file.fail(f"{field}.ratings", f"variants {a.variant.id} and {b.variant.id} disagree")
        statements = []
        for j, st in enumerate(p_file.get(t, "statements", field, list, required=False, default=[])):
            f = f"{field}.statements[{j}]"
            sex = p_file.get(st, "sex", f)
            if sex not in SEXES:
                raise p_file.fail(f"{f}.sex", f"{sex!r} is not one of {', '.join(SEXES)}")
            statements.append(Statement(sex, p_file.summary(st, "summary", f), p_file.get(st, "detail", f)))
        results = p_file.get(t, "results", field, dict, required=False, default={})
        for kind, text in results.items():
            if kind not in RESULT_KINDS or not isinstance(text, str):
                raise p_file.fail(f"{field}.results.{kind}", f"expected a text for one of {', '.join(RESULT_KINDS)}")
        order_code = {}
        for system, code in p_file.get(t, "order_code", field, dict, required=False, default={}).items():
            known = [c for c in own_codes if c.system == system and c.code == code]
            if not known:
                raise p_file.fail(f"{field}.order_code.{system}", f"{code!r} is not in valuesets.toml procedures.{pid}")
            order_code[system] = known[0]
        rated = bool(variant_ratings)
        procedure = Procedure(
            id=pid, label=p_file.get(t, "label", field),
            rrl=rrl[str(level)] if level is not None else None,
            summary=p_file.summary(t, "summary", field, required=rated),
            rationale=p_file.get(t, "rationale", field, required=rated),
            alternative=p_file.get(t, "alternative", field, required=False),
            order_code=MappingProxyType(order_code), results=MappingProxyType(dict(results)),
            pitfalls=p_file.strings(t, "pitfalls", field),
            ratings=tuple(variant_ratings), statements=tuple(statements))
        if rated and procedure.rrl is None:
            raise p_file.fail(f"{field}.rrl", "missing: a rated procedure needs its radiation level")
        procedures[pid] = procedure
        for code in own_codes:
            key = (code.system, normalise(code.system, code.code))
            if key in procedure_codes:
                raise valuesets.fail(f"procedures.{pid}", f"code {code.code} is also in {procedure_codes[key].id}")
            procedure_codes[key] = procedure
    for pid in procedure_codes_table:
        if pid not in procedures:
            raise valuesets.fail(f"procedures.{pid}", "no such procedure in procedures.toml")
    for procedure in procedures.values():
        if procedure.alternative is None:
            continue
        alternative = procedures.get(procedure.alternative)
        field = f"procedures[{procedure.id}].alternative"
        if alternative is None:
            raise p_file.fail(field, f"unknown procedure {procedure.alternative!r}")
        if not alternative.order_code or not alternative.ratings:
            raise p_file.fail(field, f"{alternative.id} needs order_code and a rating to be suggested")

    # -- policies ------------------------------------------------------------------------
    pf = policies_file
    d = pf.data
    age = pf.get(d, "age", "", dict)
    dx = pf.get(d, "diagnosis", "", dict)
    cards = pf.get(d, "cards", "", dict)
    indication = pf.get(d, "indication", "", dict)
    therapy = pf.get(d, "therapy", "", dict)
    completeness = pf.get(d, "completeness", "", dict)
    reasons = {}
    for i, t in enumerate(pf.get(d, "out_of_scope", "", list)):
        f = f"out_of_scope[{i}]"
        rid = pf.get(t, "id", f)
        reasons[rid] = OutOfScopeReason(rid, pf.get(t, "summary", f), pf.get(t, "detail", f),
                                        pf.get(t, "explain", f, bool))
    needed = {"age-unknown", "adult", "excluded-diagnosis", "relapse", "remission", "therapy-started",
              "status-unknown", "diagnosis-invalid", "unconfirmed", "date-unknown", "not-new", "symptomatic"}
    if needed - set(reasons):
        raise pf.fail("out_of_scope", f"missing reasons: {', '.join(sorted(needed - set(reasons)))}")
    override = pf.get(d, "override_reasons", "", dict)
    override_system = pf.get(override, "system", "override_reasons")
    override_codes = tuple(
        Code(override_system, pf.get(c, "code", f"override_reasons.codes[{i}]"),
             pf.get(c, "display", f"override_reasons.codes[{i}]"), "ours")
        for i, c in enumerate(pf.get(override, "codes", "override_reasons", list)))
    max_age = pf.get(age, "max_years", "age", int)
    window = pf.get(dx, "new_within_days", "diagnosis", int)
    if not 0 < max_age < 30:
        raise pf.fail("age.max_years", f"{max_age} is not a pediatric age limit")
    if window <= 0:
        raise pf.fail("diagnosis.new_within_days", "must be a positive number of days")
    policies = Policies(
        max_age_years=max_age,
        new_within_days=window,
        absent_verification_counts_as_confirmed=pf.get(dx, "absent_verification_counts_as_confirmed", "diagnosis", bool),
        absent_clinical_status_counts_as_active=pf.get(dx, "absent_clinical_status_counts_as_active", "diagnosis", bool),
        order_reason_can_establish_all=pf.get(dx, "order_reason_can_establish_all", "diagnosis", bool),
        staging_text=phrases(pf.strings(indication, "staging_words", "indication"),
                             pf.strings(indication, "staging_acronyms", "indication")),
        not_given_statuses=frozenset(pf.strings(therapy, "not_given_statuses", "therapy")),
        withhold_when_unread=frozenset(pf.strings(completeness, "withhold_when_unread", "completeness")),
        withheld_summary=pf.summary(completeness, "withheld_summary", "completeness"),
        withheld_detail=pf.get(completeness, "withheld_detail", "completeness"),
        explain_out_of_scope=pf.get(cards, "explain_out_of_scope", "cards", bool),
        out_of_scope_summary=pf.get(cards, "out_of_scope_summary", "cards"),
        out_of_scope=MappingProxyType(reasons),
        override_system=override_system,
        override_reasons=override_codes,
        pama_qcdsm=pf.get(pf.get(d, "pama", "", dict), "qcdsm", "pama"),
    )

    return Knowledge(
        topic=topic, sources=MappingProxyType(sources), ratings=MappingProxyType(ratings),
        variants=tuple(variants), procedures=MappingProxyType(procedures),
        texts=MappingProxyType(texts), policies=policies,
        system_uris=MappingProxyType(system_uris), system_names=MappingProxyType(system_names),
        _system_keys=MappingProxyType(system_keys),
        _procedure_codes=MappingProxyType(procedure_codes),
        _diagnosis_codes=MappingProxyType(diagnosis_codes),
        _diagnosis_prefixes=MappingProxyType({k: tuple(v) for k, v in diagnosis_prefixes.items()}),
        _text_kinds=MappingProxyType(text_kinds),
        _neutral=neutral,
        _any_text=re.compile("|".join(f"(?:{p.pattern})" for p in text_kinds.values()) or r"(?!x)x"),
    )
