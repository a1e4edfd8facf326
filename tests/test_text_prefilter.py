"""The one-search prefilter of text evidence (a speed measure) never hides evidence: on texts built
from the knowledge's own words, neutral phrases and display texts, the evidence found is exactly
what searching each kind's words one by one finds."""
from __future__ import annotations

import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.knowledge import default_directory, load

K = load()
TABLE = tomllib.loads((default_directory() / "valuesets.toml").read_text())["text_evidence"]
VOCABULARY = sorted({w for kind, t in TABLE.items() if kind != "neutral" for key in ("words", "acronyms")
                     for w in t.get(key, [])} | set(TABLE["neutral"]))
FILLER = ["Asthma", "history of", "no", "B-cell", "in", "pre", "-", "all", "(", ")", "child", "ALLERGY", "  "]


def one_by_one(text: str) -> list[tuple[str, str]]:
    text = K._neutral.sub(" ", text)
    return [(kind, m.group(0)) for kind, pattern in K._text_kinds.items() if (m := pattern.search(text))]


def test_the_vocabulary_is_the_knowledge_one():
    assert "lymphoblastic leukemia" in VOCABULARY and "not in remission" in VOCABULARY
    assert K.text_evidence("B-cell acute lymphoblastic leukemia, in remission") == [
        ("all", "acute lymphoblastic"), ("all-remission", "remission")]
    assert K.text_evidence("Asthma") == []


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY + FILLER), max_size=8),
       st.sampled_from([" ", "", ", ", "-", "/"]), st.booleans())
def test_prefiltered_text_evidence_is_the_one_by_one_evidence(parts, separator, upper):
    text = separator.join(parts)
    text = text.upper() if upper else text
    assert K.text_evidence(text) == one_by_one(text)
