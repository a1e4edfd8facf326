"""The knowledge base as typed, immutable objects, and the code look-ups of the hot path."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

SUMMARY_LIMIT = 140  # CDS Hooks: summary SHALL be under 140 characters
SEXES = ("any", "male", "female")
RESULT_KINDS = ("normal", "negative", "positive", "indeterminate")
DIAGNOSIS_KINDS = ("all", "all-remission", "all-relapse", "excluded", "symptom", "therapy", "expected", "benign")
PREFIX_SYSTEMS = ("icd10", "atc")  # hierarchical codes: a code ending in "*" matches its children
PREFIX_KEY = 3  # ICD-10 prefix codes are indexed by their category (first three characters)
SEEN_CODES = 20_000  # (system, code) pairs whose meaning is remembered; past this the memory starts again
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
    id: str           # also the code of the ACR category in Knowledge.acr_category_system
    label: str        # the ACR category, as the ACR names it
    indicator: str
    pama: str
    recommend: bool   # whether a study so rated may be marked isRecommended when suggested


@dataclass(frozen=True)
class RadiationLevel:
    level: int
    symbol: str
    peds_range: str
    words: str | None = None  # what a card says instead of the symbol (the ACR "O" beside 0 mSv reads as zero)

    def __str__(self) -> str:
        return f"{self.symbol} {self.peds_range}"

    @property
    def plain(self) -> str:
        return self.words or str(self)


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
    why: str | None = None        # the card's one sentence of why (the rationale is on the page)
    must_see: str | None = None   # the one piece of workflow the card itself must carry
    note: str | None = None       # why a judgement was made (the page shows it, cards do not)
    codes: tuple[Code, ...] = ()  # every code that maps to it (valuesets.toml)


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
    not_given_statuses: Mapping[str, frozenset[str]]  # per therapy record type, statuses that are no evidence
    withhold_when_unread: frozenset[str]  # resource types whose unread part withholds the rating
    withheld_summary: str
    withheld_detail: str
    explain_out_of_scope: bool
    out_of_scope_summary: str
    out_of_scope: Mapping[str, OutOfScopeReason]  # in priority order
    override_system: str
    override_reasons: tuple[Code, ...]
    pama_qcdsm: str
    sex_codes: Mapping[str, str] = field(default_factory=dict)  # a recorded sex datum's code -> male / female


@dataclass(frozen=True)
class DiagnosisMatch:
    kind: str
    code: Code


@dataclass(frozen=True)
class CodeList:
    """A code list of valuesets.toml: a diagnosis group (kind set) or a procedure's codes."""
    id: str
    description: str
    kind: str | None
    codes: tuple[Code, ...]


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    publisher: str


@dataclass(frozen=True)
class Release:
    version: str  # release.toml's version, e.g. 1.0.0
    digest: str   # SHA-256 (hex) over the folder's .toml files, names and contents

    @property
    def short(self) -> str:
        return self.digest[:12]

    @property
    def label(self) -> str:
        """Version and digest in one string (semver build metadata), e.g. 1.0.0+3f9a1c2b7d4e."""
        return f"{self.version}+{self.short}"


UNVERSIONED = Release("0", "0" * 64)


@dataclass(frozen=True)
class Topic:
    title: str
    label: str
    url: str
    topic_system: str
    scope_label: str


WORD_RUN = re.compile(r"\w+")  # what the phrases' (?<!\w) and (?!\w) take as one word


@dataclass(frozen=True)
class TextStarts:
    r"""The first \w+ run of every phrase (any case) and acronym (exact case) of the text evidence
    and the neutral phrases ("bell" of "Bell's palsy"). A phrase found in a text is bounded by
    (?<!\w) and (?!\w) and its words by spaces, so its first run is a whole run of the text
    too: an ASCII text none of whose runs is a first run names nothing. A set look-up per word
    instead of a search at every character."""
    words: frozenset[str]
    acronyms: frozenset[str]

    @classmethod
    def of(cls, words: Iterable[str], acronyms: Iterable[str]) -> "TextStarts | None":
        words, acronyms = [(w.split() or [""])[0] for w in words], list(acronyms)
        runs = [WORD_RUN.search(w) for w in words + acronyms]
        if not all(r and r.group(0).isascii() for r in runs):
            return None  # a phrase without a plain first run: only the search can be trusted
        firsts = [r.group(0) for r in runs]
        return cls(frozenset(w.lower() for w in firsts[:len(words)]), frozenset(firsts[len(words):]))

    def could_name(self, text: str) -> bool:
        if not text.isascii():
            return True
        return any(run.lower() in self.words or run in self.acronyms for run in WORD_RUN.findall(text))


@dataclass(frozen=True)
class Knowledge:
    topic: Topic
    sources: Mapping[str, str]       # id -> title
    ratings: Mapping[str, Rating]
    variants: tuple[Variant, ...]
    procedures: Mapping[str, Procedure]
    texts: Mapping[str, str]
    policies: Policies
    system_uris: Mapping[str, str]   # key -> canonical URI
    system_names: Mapping[str, str]  # key -> human name
    acr_category_system: str         # our code system for the ACR categories (Rating.id)
    source_details: Mapping[str, Source]
    rrl: Mapping[int, RadiationLevel]
    diagnosis_lists: Mapping[str, CodeList]
    _system_keys: Mapping[str, str]  # any accepted URI -> key
    _procedure_codes: Mapping[tuple[str, str], Procedure]
    _diagnosis_codes: Mapping[tuple[str, str], DiagnosisMatch]
    _diagnosis_prefixes: Mapping[tuple[str, str], tuple[tuple[str, DiagnosisMatch], ...]]  # by first 3 chars
    _text_kinds: Mapping[str, re.Pattern]  # kind -> words that are evidence of it in text
    _neutral: re.Pattern                   # phrases removed from text before matching
    _any_text: re.Pattern                  # any kind's words or a neutral phrase: one search says a text names none
    _text_starts: TextStarts | None        # a quicker "names none" for most texts
    episode: Any = None                    # episode.Episode: the closed world of the diagnostic episode
    release: Release = UNVERSIONED         # release.toml's version and the digest of the files
    _meanings: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (system, code) -> match
    _texts: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (text, leukemia) -> evidence

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
        """What a coding (system URI, code) means for the scenario (ALL, excluded, symptom, therapy), if anything.
        A record names the same few codes again and again: the answer for a pair is remembered."""
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        pair = (system, code)
        try:
            return self._meanings[pair]
        except KeyError:
            pass
        key = self.system_key(system)
        match = None if key is None else self._diagnosis(key, normalise(key, code))
        if len(self._meanings) >= SEEN_CODES:  # made-up codes cannot grow it without end
            self._meanings.clear()
        self._meanings[pair] = match
        return match

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

    def text_evidence(self, text: Any, leukemia: bool = False) -> list[tuple[str, str]]:
        """(kind, words) for each kind of evidence the text names; text only ever takes a child out.
        Dashes count as hyphens, and a hyphen separates words ("Vincristine-induced"). A family-history
        clause is not the patient's. Remission and relapse words count only beside a leukemia: in the
        same text, or in a concept coded as ALL (`leukemia`). Symptoms of the HPO lexicon count too."""
        if not isinstance(text, str) or not text:
            return []
        key = (text, leukemia)
        if (known := self._texts.get(key)) is not None:
            return known
        if len(self._texts) >= SEEN_CODES:  # made-up texts cannot grow it without end
            self._texts.clear()
        self._texts[key] = found = self._text_evidence(text, leukemia)
        return found

    def _text_evidence(self, text: str, leukemia: bool) -> list[tuple[str, str]]:
        text = text.translate(DASHES)
        found: dict[str, str] = {}
        if not self._text_starts or self._text_starts.could_name(text):
            if self._any_text.search(text):
                if self.episode:
                    text = self.episode.family.sub(" ", text)
                text = self._neutral.sub(" ", text)
                for kind, pattern in self._text_kinds.items():
                    if (hit := pattern.search(text)) and kind not in found:
                        found[kind] = hit.group(0)
                if not (leukemia or "all" in found or LEUKEMIA.search(text)):
                    found.pop("all-remission", None)
                    found.pop("all-relapse", None)
        if self.episode and "symptom" not in found:
            words = tokens(self.episode.family.sub(" ", text))
            symptom = next((f for f in self.episode.lexicon.scan(words)[0] if f.kind == "symptom"), None)
            if symptom:
                found["symptom"] = " ".join(words[symptom.start:symptom.end])
        return list(found.items())

    def _diagnosis(self, key: str, code: str) -> DiagnosisMatch | None:
        match = self._diagnosis_codes.get((key, code))
        if match:
            return match
        for prefix, candidate in self._diagnosis_prefixes.get((key, code[:PREFIX_KEY]), ()):
            if code.startswith(prefix):
                return candidate
        if key == "icd10" and self.episode and (found := self.episode.icd_class(code)):
            return DiagnosisMatch(found[0], Code("icd10", code, found[1], "ours"))
        return None

    def with_overrides(self, new_within_days: int | None = None, pama_qcdsm: str | None = None) -> "Knowledge":
        policies = self.policies
        if new_within_days is not None:
            policies = replace(policies, new_within_days=new_within_days)
        if pama_qcdsm:
            policies = replace(policies, pama_qcdsm=pama_qcdsm)
        return replace(self, policies=policies)


LEUKEMIA = re.compile(r"(?i:leuka?emia)|(?<!\w)(?:[BT]-)?ALL(?!\w)")
TOKEN = re.compile(r"[a-z0-9]+|\?")
DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00ad"), "-")


def normal(text: str) -> str:
    """Case folded, Unicode compatibility forms, every dash a hyphen."""
    return unicodedata.normalize("NFKC", text).translate(DASHES).casefold()


@lru_cache(maxsize=20_000)  # a record repeats the same few displays and texts
def tokens(text: str) -> tuple[str, ...]:
    """The words of a text as the lexicon compares them: hyphens and punctuation split words."""
    return tuple(TOKEN.findall(normal(text)))


def normalise(system_key: str, code: str) -> str:
    code = code.strip()
    return code.replace(".", "").upper() if system_key == "icd10" else code


def phrases(words: tuple[str, ...], acronyms: tuple[str, ...] = ()) -> re.Pattern:
    """One pattern for whole words and phrases (any case, any spacing) and acronyms (exact case)."""
    alternatives = [r"(?i:" + "|".join(r"\s+".join(map(re.escape, w.split())) for w in words) + ")"] if words else []
    alternatives += [re.escape(a) for a in acronyms]
    if not alternatives:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


def default_directory() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "knowledge"
