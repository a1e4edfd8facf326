"""The closed world: a warning only on a record the service can fully account for.

Every realistic in-scope record of bench/corpus.py gets its rating; every out-of-scope record (free
text the vocabulary lacks, codes by ICD-10 chapter, notes, the rest of the basket, contradictions,
sex data, other forms and channels) gets no warning and no rating; and, as a property, adding
anything the service cannot classify to any in-scope record never yields a rating.
"""
from __future__ import annotations

import copy
import shutil
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bench.corpus import (CLINICAL, EPIC_LOCAL, ICD10CM, IN_SCOPE, OUT_OF_SCOPE, condition, day, epic_all, order,
                          request)
from bench.sensitivity import RATED, outcome
from builders import TODAY
from cds_service.knowledge import KnowledgeError, default_directory, load


def rated(client, body) -> set[str]:
    ratings, found = outcome(client, body)
    warned = any(c["indicator"] == "warning" for c in found)
    assert warned == bool(ratings & {"not-appropriate"}), (ratings, [c["summary"] for c in found])
    return ratings & RATED


@pytest.mark.parametrize("name", IN_SCOPE)
def test_a_realistic_in_scope_record_gets_its_rating(client, name):
    body = IN_SCOPE[name](TODAY)
    assert rated(client, body), name


@pytest.mark.parametrize("name", OUT_OF_SCOPE)
def test_an_out_of_scope_record_gets_no_warning_and_no_rating(client, name):
    body = OUT_OF_SCOPE[name](TODAY)
    ratings, found = outcome(client, body)
    assert not ratings & RATED, name
    assert all(c["indicator"] == "info" and "Usually not appropriate" not in c["summary"] + c["detail"]
               for c in found), [c["summary"] for c in found]


def card_text(client, body) -> str:
    _, found = outcome(client, body)
    return "\n".join(c["summary"] + "\n" + c["detail"] for c in found)


@pytest.mark.parametrize("name, named", [
    ("text-Snoring, worse this week", "a recent diagnosis could not be classified: 'Snoring, worse this week'"),
    ("text-Fever", "could not be classified: 'Fever'"),
    ("icd-K35.80", "could not be classified"),
    ("order-note-unknown", "the note of ServiceRequest/order-1 could not be classified: 'Page the resident on arrival'"),
    ("basket-unknown-reason", "the reason of ServiceRequest/us-3 could not be classified: 'Parent request'"),
    ("unidentified-medication", "MedicationRequest/m1: the medication could not be identified"),
    ("all-stage-unknown", "the stage of the ALL diagnosis could not be classified"),
])
def test_the_withheld_card_names_what_could_not_be_classified(client, name, named):
    text = card_text(client, OUT_OF_SCOPE[name](TODAY))
    assert "ACR staging guidance withheld" in text and named in text
    assert "could not be classified" in text.split("**Relied on:**")[1]


@pytest.mark.parametrize("name, headline", [
    ("icd-M54.50", "symptomatic (a musculoskeletal disease (bone or joint pain))"),
    ("icd-G41.9", "symptomatic (a disease of the nervous system"),
    ("text-dyspneic", "symptomatic (dyspneic)"),
    ("all-note-symptom", "symptomatic (mediastinal mass)"),
    ("active-with-abatement", "contradicts itself (it has an abatement although it is recorded as current)"),
    ("onset-in-future", "contradicts itself (its onset is after today)"),
    ("recorded-years-before-onset", "contradicts itself (it was recorded before its onset)"),
    ("onset-data-absent", "has no date"),
    ("suspected-without-verification", "not confirmed"),
    ("health-concern-without-verification", "not confirmed"),
    ("local-status-relapsed", "status that could not be read"),
])
def test_the_out_of_scope_card_says_why(client, name, headline):
    assert headline in card_text(client, OUT_OF_SCOPE[name](TODAY))


@pytest.mark.parametrize("name", ["icd-C38.1", "icd-C91.A0", "icd-C94.20", "icd-Z85.6", "icd-Z94.84", "icd-T38.0X5A",
                                  "icd-Z79.52", "therapy-Vincristine-induced constipation", "therapy-s/p Ara-C",
                                  "relapsed-text", "administration", "statement", "intrathecal-procedure",
                                  "versioned-subject-therapy", "ingredient-only", "absolute-reference"])
def test_plainly_different_populations_get_no_card_at_all(client, name):
    """Other malignancies, history, transplant, therapy (by hyphenated words, abbreviations, every
    channel and reference form) and relapse: out of scope, with no card (they are imaged often)."""
    assert outcome(client, OUT_OF_SCOPE[name](TODAY)) == ({"no-criteria-apply"}, [])


def test_boys_only_ratings_need_every_sex_datum_to_agree(client):
    assert rated(client, IN_SCOPE["boy-birth-sex-agrees"](TODAY)) == {"not-appropriate"}
    for name in ("boy-birth-sex-female", "boy-sex-for-clinical-use-female"):
        body = OUT_OF_SCOPE[name](TODAY)
        assert outcome(client, body) == ({"no-criteria-apply"}, []), name
        chest = copy.deepcopy(body)
        chest["context"]["draftOrders"]["entry"][0]["resource"]["code"]["coding"][0]["code"] = "71260"
        assert rated(client, chest) == {"not-appropriate"}, "the chest rows do not depend on sex"


def test_an_old_unclassified_problem_does_not_withhold_but_a_recent_or_undated_one_does(client):
    old = condition("x1", {"text": "Tympanostomy tube status"}, TODAY, days_ago=400)
    assert rated(client, request(TODAY, [epic_all(TODAY), old]))
    for days_ago in (60, None):
        recent = condition("x1", {"text": "Tympanostomy tube status"}, TODAY, days_ago=days_ago)
        assert not rated(client, request(TODAY, [epic_all(TODAY), recent])), days_ago


def test_an_old_condition_is_still_read_for_what_takes_the_child_out(client):
    old = condition("x1", {"coding": [{"system": ICD10CM, "code": "G40.909"}], "text": "Epilepsy"}, TODAY, days_ago=900)
    assert "symptomatic" in card_text(client, request(TODAY, [epic_all(TODAY), old]))


def test_relapse_words_count_only_beside_a_leukemia(client):
    recurrent = condition("x1", {"text": "recurrent otitis media"}, TODAY, days_ago=700)
    assert rated(client, request(TODAY, [epic_all(TODAY), recurrent]))
    relapsed = condition("x1", {"text": "relapsed leukemia"}, TODAY, days_ago=700)
    assert outcome(client, request(TODAY, [epic_all(TODAY), relapsed])) == ({"no-criteria-apply"}, [])


def test_a_local_status_code_that_names_no_status_is_let_be(client):
    dx = epic_all(TODAY, clinicalStatus={"coding": [{"system": EPIC_LOCAL, "code": "A"},
                                                    {"system": CLINICAL, "code": "active", "display": "Active"}]})
    assert rated(client, request(TODAY, [dx]))


@pytest.mark.parametrize("shape", [
    {"note": "Mediastinal mass"}, {"note": 7}, {"note": [{"authorString": "Dr X"}]}, {"stage": "CNS3"},
    {"evidence": [1]}, {"bodySite": "Anterior mediastinum"},
], ids=["note-bare-string", "note-number", "note-without-text", "stage-bare-string", "evidence-number",
        "body-site-bare-string"])
def test_malformed_details_of_the_all_diagnosis_are_read_or_withhold(client, shape):
    """Elements of the ALL Condition sent in the wrong shape are read leniently (a bare string is text);
    what cannot be read at all withholds the rating."""
    assert not rated(client, request(TODAY, [epic_all(TODAY, **shape)]))


def test_a_malformed_note_that_is_accounted_for_still_rates(client):
    assert rated(client, request(TODAY, [epic_all(TODAY, note="Diagnosed by bone marrow aspirate")]))


def test_a_bare_string_reason_on_another_order_of_the_basket_is_read(client):
    assert not rated(client, request(TODAY, [epic_all(TODAY)], basket=[order("mri-1", "70553", reasonCode="Headache")]))


def test_an_unreadable_patient_extension_gives_no_boys_only_rating(client):
    body = IN_SCOPE["boy-birth-sex-agrees"](TODAY)
    body["prefetch"]["patient"]["extension"] = "birth sex: F"
    assert not rated(client, body)


# -- the property ---------------------------------------------------------------------------------

UNKNOWN_WORD = st.text(alphabet="bcdfghjklmnpqrstvwxz", min_size=5, max_size=10)  # no vowels: no known word


def unclassifiable_condition(word: str, days_ago: int | None, coded: bool) -> dict:
    code = {"coding": [{"system": EPIC_LOCAL, "code": word}]} if coded else {"text": f"{word} noted"}
    return condition("x9", code, TODAY, days_ago=days_ago)


CONTRADICTIONS = [
    lambda dx: dx.update(abatementDateTime=day(TODAY, 1)),
    lambda dx: dx.update(onsetDateTime=day(TODAY, -3)),
    lambda dx: dx.update(recordedDate=day(TODAY, 800)),
    lambda dx: dx.update(verificationStatus=None, category=[{"text": "Health concern"}]),
    lambda dx: dx["clinicalStatus"].update(text="Relapsed"),
    lambda dx: dx["code"].update(text="Suspected ALL"),
    lambda dx: dx.update(note=[{"text": "mediastinal mass"}]),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(sorted(IN_SCOPE)), word=UNKNOWN_WORD,
       change=st.sampled_from(["condition", "coded-condition", "reason", "note", "basket", "contradiction"]),
       days_ago=st.one_of(st.none(), st.integers(0, 80)), which=st.integers(0, len(CONTRADICTIONS) - 1))
def test_anything_unclassifiable_added_to_an_in_scope_record_never_yields_a_rating(client, case, word, change,
                                                                                  days_ago, which):
    body = IN_SCOPE[case](TODAY)
    prefetch = body["prefetch"]
    entries = prefetch["conditions"]["entry"]
    orders = body["context"]["draftOrders"]["entry"]
    if change in ("condition", "coded-condition"):
        entries.append({"resource": unclassifiable_condition(word, days_ago, change == "coded-condition")})
    elif change == "reason":
        orders[0]["resource"].setdefault("reasonCode", []).append({"text": f"staging, {word}"})
    elif change == "note":
        orders[0]["resource"]["note"] = [{"text": word}]
    elif change == "basket":
        orders.append({"resource": order("other-9", "70553", reasonCode=[{"text": word}])})
    else:
        dx = next(e["resource"] for e in entries if e["resource"]["id"] == "all-1")
        CONTRADICTIONS[which](dx)
    assert not rated(client, body), (case, change)


# -- the knowledge behind it ------------------------------------------------------------------------

def test_the_hpo_lexicon_names_its_source_version(k):
    assert k.episode.hpo_version.startswith("Human Phenotype Ontology hp/releases/")
    assert k.text_evidence("Hemoptysis") == [("symptom", "hemoptysis")]


@pytest.mark.parametrize("before, after, message", [
    ('range = "G00-G99"', 'range = "G00-G9X"', r"episode.toml: icd10\[6\].range: G00-G9X"),
    ('code = "D64.9"', 'code = "D64.99"', r"codes.expected\[0\].code: D64.99 is not in ICD-10-CM"),
], ids=["range-not-in-the-hierarchy", "expected-code-not-in-icd10cm"])
def test_episode_codes_are_checked_against_the_shipped_icd10cm_at_start_up(tmp_path, before, after, message):
    folder = tmp_path / "knowledge"
    shutil.copytree(default_directory(), folder)
    episode = folder / "episode.toml"
    episode.write_text(episode.read_text().replace(before, after))
    with pytest.raises(KnowledgeError, match=message):
        load(folder)


@pytest.mark.parametrize("code, kind", [("D64.9", "expected"), ("D64.99", None), ("Q90.9", "benign"),
                                        ("Z80.6", "benign"), ("C91.00", "all"), ("G41.9", "symptom"),
                                        ("D61.810", "therapy"), ("K35.80", None)])
def test_icd10_codes_are_classified_by_the_hierarchy(k, code, kind):
    """Positive classes only for codes of the shipped ICD-10-CM (a made-up D64.99 is not anemia);
    exclusions for any code of the chapter (WHO G41.9 is not in ICD-10-CM)."""
    match = k.diagnosis_for(ICD10CM, code)
    assert (match.kind if match else None) == kind


def test_the_episode_window_is_counted_from_the_first_all_diagnosis(client):
    """90 days before the diagnosis (episode.toml), not before today."""
    dx = epic_all(TODAY, days_ago=20)
    inside = condition("x1", {"text": "Tympanostomy tube status"}, TODAY, days_ago=20 + 89)
    outside = condition("x1", {"text": "Tympanostomy tube status"}, TODAY, days_ago=20 + 91)
    assert not rated(client, request(TODAY, [dx, inside]))
    assert rated(client, request(TODAY, [dx, outside]))
    assert TODAY - timedelta(days=20 + 91) < TODAY
