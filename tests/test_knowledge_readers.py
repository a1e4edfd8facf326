"""One reader per knowledge file: each reads its own file, and the fields the short cards, the pages
and the FHIR export need are checked at start-up like every other field."""
from __future__ import annotations

import pytest

from cds_service.knowledge import KnowledgeError, TomlFile, default_directory, load
from cds_service.knowledge import policies, scenario, valuesets
from test_knowledge import broken_copy, load_error


def test_each_reader_reads_its_own_file():
    directory = default_directory()
    read_scenario = scenario.read(TomlFile(directory, "scenario.toml"))
    assert [v.id for v in read_scenario.variants] == [
        "all-child-initial-staging-asymptomatic-chest", "all-child-male-initial-staging-asymptomatic"]
    assert read_scenario.ratings["may-be-appropriate-disagreement"].recommend is False
    assert read_scenario.rrl["0"].plain == "no ionizing radiation" and read_scenario.rrl["4"].plain == "☢☢☢☢ 3-10 mSv"
    read_valuesets = valuesets.read(TomlFile(directory, "valuesets.toml"))
    assert read_valuesets.diagnoses["all"].kind == "all"
    assert {c.code for c in read_valuesets.procedures["xr-chest"]} >= {"71045", "71046"}
    assert policies.read(TomlFile(directory, "policies.toml")).max_age_years == 18


def test_the_knowledge_keeps_what_the_pages_and_the_export_need(k):
    assert k.acr_category_system == "urn:cds-service:acr-leukemia-staging:acr-category"
    assert set(k.diagnosis_lists) >= {"all", "all-remission", "all-relapse", "other-leukemia", "symptoms"}
    assert all(p.codes for p in k.procedures.values())
    assert k.procedures["xr-chest"].must_see.startswith("If it shows a mediastinal mass: PAUSE")
    assert all(p.why for p in k.procedures.values() if p.ratings)
    assert k.source_details["S1"].publisher.startswith("gighz.com")


@pytest.mark.parametrize("file, old, new, message", [
    ("procedures.toml", 'why = "A radiograph screens', 'reason = "A radiograph screens',
     "procedures.toml: procedures[ct-chest].why: missing"),
    ("scenario.toml", "pama = \"not-appropriate\"\nrecommend = false", "pama = \"not-appropriate\"",
     "scenario.toml: ratings.usually-not-appropriate.recommend: missing"),
    ("scenario.toml", "card_note =", "closing_note =", "scenario.toml: texts.card_note: missing"),
    ("scenario.toml", 'acr_category_system = "', 'category_system = "', "scenario.toml: topic.acr_category_system: missing"),
    ("scenario.toml", 'words = "no ionizing radiation"', "words = 0", "scenario.toml: rrl.0.words: expected a string"),
])
def test_a_missing_or_wrong_new_field_stops_start_up(tmp_path, file, old, new, message):
    assert message in load_error(broken_copy(tmp_path, file, old, new))


def test_the_public_api_is_unchanged():
    k = load()
    assert isinstance(KnowledgeError("x"), ValueError)
    assert k.procedure_for("http://www.ama-assn.org/go/cpt", "71250").id == "ct-chest"
    assert k.diagnosis_for("http://hl7.org/fhir/sid/icd-10-cm", "C91.00").kind == "all"
