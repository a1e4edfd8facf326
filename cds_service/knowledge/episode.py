"""Reader of episode.toml and hpo_lexicon.toml: the closed world of the diagnostic episode.

Gives the episode window, the ICD-10 classes by hierarchy (checked against the ICD-10-CM release
that simple-icd-10-cm ships), the code lists of expected findings and benign conditions, and the
Lexicon that says whether a text is fully accounted for and which symptoms it names."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping

from .model import tokens
from .toml_file import TomlFile

POSITIVE = ("all", "expected", "benign")  # classes that let a Condition or a text count as accounted for
RANGE_KINDS = ("excluded", "symptom", "therapy", "benign")
NEGATIONS = frozenset({"not", "no", "never", "non"})  # beside a status: it says the opposite


@lru_cache(maxsize=1)
def icd10cm():
    """The ICD-10-CM release shipped by simple-icd-10-cm (parsed once, about 2 s)."""
    import warnings
    with warnings.catch_warnings():  # it reads its data with importlib.resources' legacy calls
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm
    return simple_icd_10_cm


def icd10cm_version() -> str:
    from importlib.metadata import version
    return f"simple-icd-10-cm {version('simple-icd-10-cm')}"


@dataclass(frozen=True)
class Found:
    kind: str    # symptom, expected, benign, all, staging, neutral, uncertain
    label: str   # what it is, for people
    start: int   # token span
    end: int


@dataclass(frozen=True)
class Lexicon:
    """Phrases as token tuples, each with its kind and label; the first entry of a phrase wins."""
    phrases: Mapping[tuple[str, ...], tuple[str, str]]
    lengths: Mapping[str, tuple[int, ...]]  # first token -> phrase lengths starting with it, longest first

    @classmethod
    def of(cls, entries: Iterable[tuple[str, str, str]]) -> "Lexicon":
        phrases: dict[tuple[str, ...], tuple[str, str]] = {}
        for phrase, kind, label in entries:
            words = tokens(phrase)
            if words and words not in phrases:
                phrases[words] = (kind, label)
        lengths: dict[str, set[int]] = {}
        for words in phrases:
            lengths.setdefault(words[0], set()).add(len(words))
        return cls(phrases, {w: tuple(sorted(n, reverse=True)) for w, n in lengths.items()})

    def scan(self, words: tuple[str, ...]) -> tuple[list[Found], list[int]]:
        """The phrases found (longest at each position) and the indexes of words no phrase covers."""
        found, uncovered, covered_to = [], [], 0
        for i, word in enumerate(words):
            for n in self.lengths.get(word, ()):
                if hit := self.phrases.get(words[i:i + n]):
                    found.append(Found(hit[0], hit[1], i, i + n))
                    covered_to = max(covered_to, i + n)
                    break
            if i >= covered_to and not word.isdigit():  # numbers (values, dates) claim nothing by themselves
                uncovered.append(i)
        return found, uncovered


@dataclass(frozen=True)
class IcdRange:
    first: str
    last: str
    kind: str
    label: str


@dataclass(frozen=True)
class Episode:
    days_before_diagnosis: int
    icd_ranges: tuple[IcdRange, ...]
    icd_codes: Mapping[str, tuple[str, str]]     # normalised code or prefix ("R16*") -> (kind, label)
    lexicon: Lexicon
    family: re.Pattern                           # a family-history clause: not the patient's
    status_words: Mapping[str, Mapping[str, frozenset[str]]]  # clinical/verification -> HL7 code -> the words
                                                             # that contradict it (other codes' words, negations)
    hpo_version: str

    def icd_class(self, code: str) -> tuple[str, str] | None:
        """(kind, label) of an ICD-10 code (no dots, upper case) by the listed codes, then the ranges.
        Positive classes need a code that exists in the shipped ICD-10-CM release."""
        match = self.icd_codes.get(code) or next(
            (self.icd_codes[p] for p in (code[:n] + "*" for n in range(len(code), 2, -1)) if p in self.icd_codes), None)
        if match is None:
            category = code[:3]
            match = next(((r.kind, r.label) for r in self.icd_ranges if r.first <= category <= r.last), None)
        if match and match[0] in POSITIVE and not icd10cm().is_valid_item(code):
            return None
        return match


def read(f: TomlFile, lexicon: TomlFile, all_words: Iterable[str], staging_words: Iterable[str]) -> Episode:
    d = f.data
    days = f.get(f.get(d, "episode", "", dict), "days_before_diagnosis", "episode", int)
    if days <= 0:
        raise f.fail("episode.days_before_diagnosis", "must be a positive number of days")
    cm = icd10cm()
    ranges = []
    for i, entry in enumerate(f.get(d, "icd10", "", list)):
        at = f"icd10[{i}]"
        first, _, last = f.get(entry, "range", at).partition("-")
        kind = f.one_of(entry, "kind", at, RANGE_KINDS)
        if not cm.is_valid_item(first) or not cm.is_valid_item(last):
            raise f.fail(f"{at}.range", f"{first}-{last}: not categories of ICD-10-CM ({icd10cm_version()})")
        ranges.append(IcdRange(first, last, kind, f.get(entry, "label", at)))
    codes: dict[str, tuple[str, str]] = {}
    for kind in ("expected", "benign"):
        for i, entry in enumerate(f.get(f.get(d, "codes", "", dict), kind, "codes", list)):
            at = f"codes.{kind}[{i}]"
            code = f.get(entry, "code", at)
            if not cm.is_valid_item(code.rstrip("*")):
                raise f.fail(f"{at}.code", f"{code} is not in ICD-10-CM ({icd10cm_version()})")
            codes[code.replace(".", "").upper()] = (kind, f.get(entry, "label", at))
    text = f.get(d, "text", "", dict)
    built = lexicon.data
    entries = [(p, "uncertain", "uncertain") for p in f.strings(text, "uncertain", "text")]
    for group in f.get(built, "symptom", "", list):
        entries += [(p, "symptom", group["label"]) for p in group["phrases"]]
    entries += [(p, "all", "acute lymphoblastic leukemia") for p in all_words]
    entries += [(p, "staging", "staging") for p in staging_words]
    for kind in ("expected", "benign"):
        entries += [(p, kind, p) for p in f.strings(text, kind, "text")]
    for group in f.get(built, "expected", "", list):
        entries += [(p, "expected", group["label"]) for p in group["phrases"]]
    entries += [(p, "neutral", p) for p in f.strings(text, "neutral", "text")]
    status = f.get(d, "status", "", dict)
    status_words = {}
    for axis in ("clinical", "verification"):
        own = {code: frozenset(t for w in words for t in tokens(w))
               for code, words in f.get(status, axis, "status", dict).items()}
        status_words[axis] = {code: frozenset().union(*(w for c, w in own.items() if c != code)) - words | NEGATIONS
                              for code, words in own.items()}
    family = re.compile(r"(?i)\b(?:" + "|".join(map(re.escape, f.strings(text, "family", "text"))) + r")\b[^,;.\n]*")
    source = f.get(built, "source", "", dict)
    return Episode(days, tuple(ranges), codes, Lexicon.of(entries), family, status_words,
                   f"{source.get('ontology')} {source.get('version')} ({source.get('package')})")
