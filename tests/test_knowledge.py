"""The knowledge loader: the real knowledge base loads into typed, immutable objects, and a broken
copy fails at start-up with a KnowledgeError that names the file and the field."""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from builders import CPT, ICD10CM, LOINC, SNOMED
from cds_service.knowledge import SUMMARY_LIMIT, KnowledgeError, default_directory, load

CHEST = "all-child-initial-staging-asymptomatic-chest"
MALE = "all-child-male-initial-staging-asymptomatic"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def copy_knowledge(tmp_path: Path) -> Path:
    directory = tmp_path / "knowledge"
    shutil.copytree(default_directory(), directory)
    return directory


def broken_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the real knowledge directory with the first occurrence of `old` in `file` replaced."""
    directory = copy_knowledge(tmp_path)
    path = directory / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"the anchor {old!r} is no longer in {file}; update the test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return directory


def load_error(directory: Path) -> str:
    with pytest.raises(KnowledgeError) as caught:
        load(directory)
    return str(caught.value)


# -- the real knowledge ----------------------------------------------------------------


def test_real_knowledge_loads_from_the_default_and_an_explicit_directory(k):
    assert load(default_directory()).procedures.keys() == k.procedures.keys()
    assert k.topic.title == "Staging and Follow-Up of Leukemia"
    assert "TopicId=317" in k.topic.url


def test_the_two_variants_with_their_sex_and_source(k):
    variants = {v.id: v for v in k.variants}
    assert set(variants) == {CHEST, MALE}
    assert (variants[CHEST].sex, variants[CHEST].source) == ("any", "S0")
    assert (variants[MALE].sex, variants[MALE].source) == ("male", "S1")
    assert variants[CHEST].inclusion and variants[CHEST].exclusion
    assert variants[MALE].inclusion and variants[MALE].exclusion


@pytest.mark.parametrize("procedure, variant, label, source", [
    ("xr-chest", CHEST, "May be appropriate (Disagreement)", "S0"),
    ("xr-chest", MALE, "May be appropriate (Disagreement)", "S1"),
    ("ct-chest", CHEST, "Usually not appropriate", "S0"),
    ("pet-ct", CHEST, "Usually not appropriate", "S0"),
    ("pet-ct", MALE, "Usually not appropriate", "S1"),
    ("mr-chest", CHEST, "Usually not appropriate", "S0"),
    ("us-scrotum", MALE, "May be appropriate (Disagreement)", "S1"),
    ("ct-abd-pelvis-iv", MALE, "Usually not appropriate", "S1"),
])
def test_source_reported_ratings(k, procedure, variant, label, source):
    ratings = {vr.variant.id: vr for vr in k.procedures[procedure].ratings}
    assert ratings[variant].rating.label == label
    assert ratings[variant].source == source


def test_no_rating_is_invented(k):
    rated = {(p.id, vr.variant.id) for p in k.procedures.values() for vr in p.ratings}
    assert rated == {("xr-chest", CHEST), ("xr-chest", MALE), ("ct-chest", CHEST), ("pet-ct", CHEST),
                     ("pet-ct", MALE), ("mr-chest", CHEST), ("us-scrotum", MALE), ("ct-abd-pelvis-iv", MALE)}
    labels = {vr.rating.label for p in k.procedures.values() for vr in p.ratings}
    assert "Usually appropriate" not in labels


def test_rating_vocabulary_maps_to_indicator_and_pama(k):
    by_label = {r.label: r for r in k.ratings.values()}
    assert (by_label["Usually not appropriate"].indicator, by_label["Usually not appropriate"].pama) \
        == ("warning", "not-appropriate")
    assert (by_label["May be appropriate (Disagreement)"].indicator,
            by_label["May be appropriate (Disagreement)"].pama) == ("info", "appropriate")


@pytest.mark.parametrize("procedure, level", [
    ("xr-chest", "☢ <0.03 mSv"), ("ct-chest", "☢☢☢☢ 3-10 mSv"), ("pet-ct", "☢☢☢☢ 3-10 mSv"),
    ("mr-chest", "O 0 mSv"), ("us-scrotum", "O 0 mSv"), ("ct-abd-pelvis-iv", "☢☢☢☢ 3-10 mSv"),
])
def test_pediatric_radiation_levels(k, procedure, level):
    assert str(k.procedures[procedure].rrl) == level


def test_every_summary_fits_a_card_and_every_rated_procedure_is_complete(k):
    for procedure in k.procedures.values():
        for summary in [procedure.summary] + [s.summary for s in procedure.statements]:
            if summary is not None:
                assert len(summary) < SUMMARY_LIMIT == 140, (procedure.id, summary)
        if procedure.ratings:
            assert procedure.summary and procedure.rationale and procedure.rrl, procedure.id


def test_alternatives_and_their_order_codes(k):
    assert k.procedures["ct-chest"].alternative == "xr-chest"
    assert k.procedures["pet-ct"].alternative == "xr-chest"
    assert k.procedures["mr-chest"].alternative == "xr-chest"
    assert k.procedures["ct-abd-pelvis-iv"].alternative == "us-scrotum"
    assert k.procedures["xr-chest"].alternative is None
    xr = {system: c.code for system, c in k.procedures["xr-chest"].order_code.items()}
    us = {system: c.code for system, c in k.procedures["us-scrotum"].order_code.items()}
    assert xr == {"cpt": "71046", "loinc": "36643-5", "snomed": "399208008"}
    assert us == {"cpt": "76870", "loinc": "25002-7", "snomed": "1220587009"}


def test_results_and_pitfalls_carry_the_mediastinal_mass_workflow(k):
    xr = k.procedures["xr-chest"]
    assert set(xr.results) == {"normal", "positive", "indeterminate"}
    assert "anesthesiology" in xr.results["positive"] and "PAUSE" in xr.results["positive"]
    assert set(k.procedures["us-scrotum"].results) == {"positive", "negative", "indeterminate"}
    assert "No testicular biopsy" in k.procedures["us-scrotum"].results["positive"]


def test_facts_without_a_rating_are_marked_as_such(k):
    brain = k.procedures["mr-brain"]
    assert not brain.ratings
    assert "lumbar puncture" in brain.statements[0].summary
    assert "Not an ACR rating" in brain.statements[0].detail
    pelvis = k.procedures["us-pelvis"]
    assert not pelvis.ratings and pelvis.statements[0].sex == "female"
    assert "Not an ACR rating" in pelvis.statements[0].detail


@pytest.mark.parametrize("system, code, procedure", [
    (CPT, "71250", "ct-chest"), (CPT, "71260", "ct-chest"), (CPT, "71270", "ct-chest"),
    (LOINC, "24627-2", "ct-chest"), (SNOMED, "75385009", "ct-chest"), (SNOMED, "395081000119108", "ct-chest"),
    (CPT, "71046", "xr-chest"), (LOINC, "36643-5", "xr-chest"), (SNOMED, "399208008", "xr-chest"),
    (CPT, "78815", "pet-ct"), (SNOMED, "443271005", "pet-ct"), (CPT, "71550", "mr-chest"),
    (CPT, "76870", "us-scrotum"), (CPT, "74177", "ct-abd-pelvis-iv"), (CPT, "70551", "mr-brain"),
])
def test_procedure_codes_in_the_four_systems(k, system, code, procedure):
    assert k.procedure_for(system, code).id == procedure


@pytest.mark.parametrize("system, code", [
    (SNOMED, "169069000"),   # CT chest, UNVERIFIED: public sources conflict
    (SNOMED, "816077007"),   # MRI brain, UNVERIFIED
    (CPT, "71271"),          # low-dose lung screening CT: not a staging study
    (CPT, "72133"),          # CT lumbar spine
    (LOINC, "71250"),        # a CPT code under the wrong system
    ("urn:oid:1.2.3", "71250"),
    (None, "71250"),
    (CPT, None),
])
def test_codes_the_knowledge_does_not_know(k, system, code):
    assert k.procedure_for(system, code) is None


@pytest.mark.parametrize("system, code, kind", [
    (SNOMED, "91857003", "all"), (SNOMED, "277571004", "all"), (ICD10CM, "C91.00", "all"),
    (ICD10CM, "c9100", "all"), (ICD10, "C91.0", "all"),
    (SNOMED, "91856007", "all-remission"), (ICD10CM, "C91.01", "all-remission"),
    (ICD10CM, "C91.02", "all-relapse"),
    (SNOMED, "91861009", "excluded"), (SNOMED, "92818009", "excluded"), (SNOMED, "92814006", "excluded"),
    (ICD10CM, "C92.00", "excluded"), (ICD10CM, "C91.10", "excluded"),
    (SNOMED, "49727002", "symptom"), (ICD10CM, "R05.1", "symptom"), (ICD10, "R05", "symptom"),
    (SNOMED, "267036007", "symptom"), (ICD10CM, "R06.02", "symptom"), (SNOMED, "25064002", "symptom"),
])
def test_diagnosis_codes(k, system, code, kind):
    assert k.diagnosis_for(system, code).kind == kind


@pytest.mark.parametrize("system, code", [
    (SNOMED, "91855006"),    # acute leukemia, unspecified cell type: not ALL
    (SNOMED, "279039007"),   # low back pain (SNOMED CT has no open hierarchy here: the closed world decides)
])
def test_diagnosis_codes_the_knowledge_does_not_know(k, system, code):
    assert k.diagnosis_for(system, code) is None


@pytest.mark.parametrize("code", ["C95.00", "C91", "C91.90", "C91.Z0"])
def test_a_less_specific_leukemia_code_is_the_same_disease_not_an_exclusion(k, code):
    """Not ALL (alone it brings no child in), and not another leukemia beside an ALL code."""
    match = k.diagnosis_for(ICD10CM, code)
    assert match.kind == "expected" and "less specific record" in match.code.display


def test_every_code_keeps_its_verification_mark_and_none_is_unverified(k):
    codes = [m.code for m in k._diagnosis_codes.values()] + [m.code for group in k._diagnosis_prefixes.values()
                                                              for _, m in group]
    statuses = {c.status for c in codes}
    assert statuses <= {"VERIFIED", "VERIFIED-moderate", "judgement", "ours"}
    assert "VERIFIED" in statuses and "judgement" in statuses


def test_policies_have_documented_defaults(k):
    policies = k.policies
    assert policies.max_age_years == 18
    assert 0 < policies.new_within_days <= 60
    assert policies.order_reason_can_establish_all is False
    assert policies.pama_qcdsm
    assert all(c.display for c in policies.override_reasons)
    assert {"symptomatic", "abnormal-radiograph", "protocol"} <= {c.code for c in policies.override_reasons}
    assert list(policies.out_of_scope)[:2] == ["age-unknown", "adult"]


def test_overrides_replace_policies_without_touching_the_original():
    original = load()
    before = (original.policies.new_within_days, original.policies.pama_qcdsm)
    changed = original.with_overrides(new_within_days=61, pama_qcdsm="G1234")
    assert (changed.policies.new_within_days, changed.policies.pama_qcdsm) == (61, "G1234")
    assert (original.policies.new_within_days, original.policies.pama_qcdsm) == before != (61, "G1234")


def test_knowledge_is_immutable(k):
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.policies.max_age_years = 99
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.procedures["ct-chest"].summary = "changed"
    with pytest.raises(TypeError):
        k.procedures["new"] = k.procedures["ct-chest"]
    with pytest.raises(TypeError):
        k.procedures["xr-chest"].order_code["cpt"] = k.procedures["xr-chest"].order_code["loinc"]


# -- broken copies fail at start-up, naming the file and the field ----------------------


def test_bad_rating_id(tmp_path):
    directory = broken_copy(tmp_path, "procedures.toml",
                            'all-child-initial-staging-asymptomatic-chest = { rating = "usually-not-appropriate"',
                            'all-child-initial-staging-asymptomatic-chest = { rating = "usually-inappropriate"')
    message = load_error(directory)
    assert message.startswith("procedures.toml: ")
    assert re.search(r"procedures\[ct-chest\]\.ratings\.all-child-initial-staging-asymptomatic-chest\.rating",
                     message)
    assert "usually-inappropriate" in message


def test_unknown_variant(tmp_path):
    # the first male-variant rating in procedures.toml is the chest radiograph's
    directory = broken_copy(tmp_path, "procedures.toml", "all-child-male-initial-staging-asymptomatic = {",
                            "all-child-female-initial-staging = {")
    message = load_error(directory)
    assert message.startswith("procedures.toml: ")
    assert "procedures[xr-chest].ratings.all-child-female-initial-staging" in message
    assert "unknown variant" in message


def test_summary_of_140_characters_is_refused(tmp_path):
    summary = "CT chest: Usually not appropriate for initial staging of asymptomatic pediatric ALL"
    long = summary + " " + "x" * (140 - len(summary) - 1)
    assert len(long) == 140
    directory = broken_copy(tmp_path, "procedures.toml", f'summary = "{summary}', f'summary = "{long}"\nold = "')
    message = load_error(directory)
    assert message.startswith("procedures.toml: procedures[ct-chest].summary: 140 characters")


def test_summary_of_139_characters_is_accepted(tmp_path):
    summary = "CT chest: Usually not appropriate for initial staging of asymptomatic pediatric ALL"
    fits = summary + " " + "x" * (139 - len(summary) - 1)
    directory = broken_copy(tmp_path, "procedures.toml", f'summary = "{summary}', f'summary = "{fits}"\nold = "')
    assert load(directory).procedures["ct-chest"].summary == fits


def test_statement_summary_is_checked_too(tmp_path):
    start = 'summary = "MRI brain: no ACR rating here.'
    directory = broken_copy(tmp_path, "procedures.toml", start, start + " " + "y" * 140)
    message = load_error(directory)
    assert message.startswith("procedures.toml: procedures[mr-brain].statements[0].summary")


def test_unknown_procedure_in_valuesets(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml", "[procedures.xr-chest]\n",
                            '[procedures.ct-head]\ncodes = [{ system = "cpt", code = "70450", display = "CT head",'
                            ' status = "VERIFIED" }]\n\n[procedures.xr-chest]\n')
    message = load_error(directory)
    assert message.startswith("valuesets.toml: procedures.ct-head")
    assert "no such procedure in procedures.toml" in message


def test_procedure_without_a_code_list(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml", "[procedures.mr-spine]\n", "[unused-mr-spine]\n")
    message = load_error(directory)
    assert message.startswith("valuesets.toml: procedures.mr-spine")


def test_unverified_code_status(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml",
                            '{ system = "snomed", code = "91857003", display = "Acute lymphoid leukemia", '
                            'status = "VERIFIED" }',
                            '{ system = "snomed", code = "91857003", display = "Acute lymphoid leukemia", '
                            'status = "UNVERIFIED" }')
    message = load_error(directory)
    assert message.startswith("valuesets.toml: diagnoses.all.codes[0].status")
    assert "UNVERIFIED" in message


def test_unverified_procedure_code_status(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml",
                            '{ system = "cpt", code = "71250", display = "CT chest, without contrast", '
                            'status = "VERIFIED" }',
                            '{ system = "cpt", code = "71250", display = "CT chest, without contrast", '
                            'status = "UNVERIFIED" }')
    message = load_error(directory)
    assert message.startswith("valuesets.toml: procedures.ct-chest.codes[0].status")


def test_duplicate_code_across_procedures(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml",
                            '{ system = "cpt", code = "78815",',
                            '{ system = "cpt", code = "71250", display = "CT chest again", status = "VERIFIED" },\n'
                            '    { system = "cpt", code = "78815",')
    message = load_error(directory)
    assert message.startswith("valuesets.toml: procedures.pet-ct")
    assert "71250" in message and "ct-chest" in message


def test_duplicate_diagnosis_code(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml",
                            '{ system = "snomed", code = "91856007",',
                            '{ system = "snomed", code = "91857003", display = "again", status = "VERIFIED" },\n'
                            '    { system = "snomed", code = "91856007",')
    message = load_error(directory)
    assert message.startswith("valuesets.toml: diagnoses.")
    assert "91857003" in message


def test_unknown_code_system(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml",
                            '{ system = "cpt", code = "76870",', '{ system = "cpt4", code = "76870",')
    message = load_error(directory)
    assert message.startswith("valuesets.toml: procedures.us-scrotum.codes[0].system")


def test_order_code_must_be_in_the_procedure_value_set(tmp_path):
    directory = broken_copy(tmp_path, "procedures.toml", 'cpt = "71046"', 'cpt = "71250"')
    message = load_error(directory)
    assert message.startswith("procedures.toml: procedures[xr-chest].order_code.cpt")


def test_unknown_alternative(tmp_path):
    directory = broken_copy(tmp_path, "procedures.toml", 'alternative = "us-scrotum"', 'alternative = "us-testis"')
    message = load_error(directory)
    assert message.startswith("procedures.toml: procedures[ct-abd-pelvis-iv].alternative")


def test_unknown_radiation_level(tmp_path):
    directory = broken_copy(tmp_path, "procedures.toml", 'id = "ct-chest"\nlabel = "CT chest"\nrrl = 4',
                            'id = "ct-chest"\nlabel = "CT chest"\nrrl = 9')
    message = load_error(directory)
    assert message.startswith("procedures.toml: procedures[ct-chest].rrl")


def test_bad_variant_sex(tmp_path):
    directory = broken_copy(tmp_path, "scenario.toml", 'sex = "male"', 'sex = "boy"')
    message = load_error(directory)
    assert message.startswith("scenario.toml: variants[1].sex")


def test_bad_indicator(tmp_path):
    directory = broken_copy(tmp_path, "scenario.toml", 'indicator = "warning"', 'indicator = "hard-stop"')
    message = load_error(directory)
    assert message.startswith("scenario.toml: ratings.usually-not-appropriate.indicator")


def test_policy_of_the_wrong_type(tmp_path):
    directory = broken_copy(tmp_path, "policies.toml", "max_years = 18", 'max_years = "18"')
    message = load_error(directory)
    assert message.startswith("policies.toml: age.max_years")


def test_missing_out_of_scope_reason(tmp_path):
    directory = broken_copy(tmp_path, "policies.toml", 'id = "not-new"', 'id = "stale"')
    message = load_error(directory)
    assert message.startswith("policies.toml: out_of_scope")
    assert "not-new" in message


def test_file_that_is_not_toml(tmp_path):
    directory = broken_copy(tmp_path, "scenario.toml", "[topic]", "[topic")
    assert load_error(directory).startswith("scenario.toml: not valid TOML")


def test_missing_file(tmp_path):
    directory = copy_knowledge(tmp_path)
    (directory / "policies.toml").unlink()
    assert load_error(directory).startswith("policies.toml: file not found")


def test_missing_directory(tmp_path):
    message = load_error(tmp_path / "nowhere")
    assert "nowhere" in message and "CDS_KNOWLEDGE_DIR" in message


# -- the fail-safe knowledge: text evidence, staging reasons, therapy, completeness ----------


def test_text_evidence_for_an_unknown_kind(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml", "[text_evidence.all-relapse]", "[text_evidence.relapsed]")
    assert load_error(directory).startswith("valuesets.toml: text_evidence.relapsed")


def test_text_evidence_words_must_be_strings(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml", 'words = ["remission"]', 'words = ["remission", 7]')
    assert load_error(directory).startswith("valuesets.toml: text_evidence.all-remission.words[1]")


def test_prefix_codes_only_for_hierarchical_systems(tmp_path):
    directory = broken_copy(tmp_path, "valuesets.toml", '{ system = "rxnorm", code = "11202",',
                            '{ system = "rxnorm", code = "112*",')
    message = load_error(directory)
    assert message.startswith("valuesets.toml: diagnoses.induction-agents.codes[0].code")
    assert "icd10, atc" in message


@pytest.mark.parametrize("old, new, field", [
    ('staging_words = ["staging",', 'staging_words = [7, "staging",', "indication.staging_words[0]"),
    ('withhold_when_unread = ["Condition"]', 'withhold_when_unread = "Condition"', "completeness.withhold_when_unread"),
    ("[therapy]", "[therapies]", "therapy"),
    ('withheld_summary = "ACR', 'withheld_summary = "' + "x" * 140 + 'ACR', "completeness.withheld_summary"),
])
def test_broken_fail_safe_policies(tmp_path, old, new, field):
    directory = broken_copy(tmp_path, "policies.toml", old, new)
    assert load_error(directory).startswith(f"policies.toml: {field}")


def test_text_evidence_matching(k):
    assert k.text_evidence("Acute lymphoblastic leukemia not having achieved remission") == [("all", "Acute lymphoblastic")]
    assert k.text_evidence("ALL in remission") == [("all", "ALL"), ("all-remission", "remission")]
    assert k.text_evidence("all findings normal") == []                   # acronyms are case-sensitive
    assert k.text_evidence("Short  of\nbreath") == [("symptom", "Short  of\nbreath")]
    assert k.text_evidence("Lumpectomy scar; chemoport in place") == []   # whole words only
    assert k.text_evidence("on vinCRIStine") == [("therapy", "vinCRIStine")]
    assert k.text_evidence(None) == [] and k.text_evidence(42) == []


def test_codes_without_their_system(k):
    conditions, medications = ("snomed", "icd10"), ("rxnorm", "atc")
    assert k.diagnosis_in_any_system("R05.9", conditions).kind == "symptom"
    assert k.diagnosis_in_any_system("91861009", conditions).kind == "excluded"
    assert k.diagnosis_in_any_system(11202, medications).kind == "therapy"
    assert k.diagnosis_in_any_system("71250", conditions) is None and k.diagnosis_in_any_system("", conditions) is None
    # ICD-10-CM L01.00 (impetigo) has the form of ATC L01 (antineoplastic agents): tried only where it can be
    assert k.diagnosis_in_any_system("L01.00", conditions) is None
    assert k.diagnosis_in_any_system("L01XX24", medications).kind == "therapy"
    assert k.diagnosis_for("urn:oid:2.16.840.1.113883.6.90", "C91.02").kind == "all-relapse"
    assert k.diagnosis_for("http://www.whocc.no/atc", "L01XX24").kind == "therapy"


def test_every_policy_reason_has_its_out_of_scope_entry(k):
    assert {"therapy-started", "status-unknown", "diagnosis-invalid"} <= set(k.policies.out_of_scope)
    assert not k.policies.out_of_scope["therapy-started"].explain
