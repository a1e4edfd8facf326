"""The prefilters of text evidence (speed measures: the first-word look-up, then one search for all
kinds) never hide evidence: on texts built from the knowledge's own words, neutral phrases and
display texts, the evidence found is exactly what searching each kind's words one by one finds."""
from __future__ import annotations

import re
import tomllib
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.knowledge import default_directory, load
from cds_service.knowledge.model import TextStarts

K = load()
TABLE = tomllib.loads((default_directory() / "valuesets.toml").read_text())["text_evidence"]
VOCABULARY = sorted({w for kind, t in TABLE.items() if kind != "neutral" for key in ("words", "acronyms")
                     for w in t.get(key, [])} | set(TABLE["neutral"]))
FILLER = ["Asthma", "history of", "no", "B-cell", "in", "pre", "-", "all", "(", ")", "child", "ALLERGY", "  ",
          "'s", "Bell", "_", "7", "é", "ſ", "\n"]


# The same knowledge without its prefilters: no first-word look-up, a search that always says "maybe".
UNFILTERED = replace(K, _text_starts=None, _any_text=re.compile(""))


def one_by_one(text: str) -> list[tuple[str, str]]:
    return UNFILTERED.text_evidence(text)


def test_the_vocabulary_is_the_knowledge_one():
    assert "lymphoblastic leukemia" in VOCABULARY and "not in remission" in VOCABULARY
    assert K.text_evidence("B-cell acute lymphoblastic leukemia, in remission") == [
        ("all", "acute lymphoblastic"), ("all-remission", "remission")]
    assert K.text_evidence("Asthma") == [("symptom", "asthma")]   # the HPO lexicon
    assert K.text_evidence("Anemia") == []


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY + FILLER), max_size=8),
       st.sampled_from([" ", "", ", ", "-", "/"]), st.booleans())
def test_prefiltered_text_evidence_is_the_one_by_one_evidence(parts, separator, upper):
    text = separator.join(parts)
    text = text.upper() if upper else text
    assert K.text_evidence(text) == one_by_one(text)


def test_the_first_word_prefilter_stands_aside_when_it_cannot_be_exact():
    assert TextStarts.of(["Bell's palsy", "acute lymphoblastic"], ["T-ALL"]) == TextStarts(
        frozenset({"bell", "acute"}), frozenset({"T"}))
    assert TextStarts.of(["+++ marker"], []) is None       # a phrase without a plain first word
    assert TextStarts.of(["leucémie"], []) is None          # a non-ASCII first word
    starts = TextStarts.of(["relapse"], ["ALL"])
    assert not starts.could_name("Asthma, all year")        # acronyms are exact case
    assert starts.could_name("RELAPSE") and starts.could_name("pre-B ALL")
    assert starts.could_name("relapſe")                     # non-ASCII text: left to the search
