"""Change-impact review: `cds-service knowledge check DIR` and `cds-service knowledge diff OLD NEW`, on real
one-line changes to a copy of knowledge/: exactly the outcomes that change are printed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cds_service import cli
from cds_service.knowledge import default_directory

IN_SCOPE = ["demo-boy-12", "demo-boy-4", "demo-girl-15", "demo-girl-7"]  # the demo children the guidance rates


def changed_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of knowledge/ with one line changed."""
    directory = tmp_path / "new"
    shutil.copytree(default_directory(), directory)
    path = directory / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    return directory


def diff(capsys, new: Path, *extra: str) -> tuple[int, list[str], str]:
    code = cli.main(["knowledge", "diff", str(default_directory()), str(new), *extra])
    out = capsys.readouterr().out
    return code, [line for line in out.splitlines() if line.startswith("- ")], out


def codes_of(k, procedure: str) -> list[str]:
    return [f"{k.system_names[c.system]} {c.code}" for c in k.procedures[procedure].codes]


def test_a_moved_rating_prints_exactly_the_outcomes_it_changes(tmp_path, capsys, k):
    new = changed_copy(tmp_path, "procedures.toml",
                       'all-child-initial-staging-asymptomatic-chest = { rating = "usually-not-appropriate", '
                       'source = "S0" }\n\n[[procedures]]\nid = "us-scrotum"',
                       'all-child-initial-staging-asymptomatic-chest = { rating = "may-be-appropriate-disagreement", '
                       'source = "S0" }\n\n[[procedures]]\nid = "us-scrotum"')  # MRI chest's rating
    markdown = tmp_path / "review.md"
    code, lines, out = diff(capsys, new, "--markdown", str(markdown))
    expected = {f"- {patient}, {coded} (order try-{coded.split()[-1]}): indicator warning -> info; "
                f"PAMA not-appropriate -> appropriate" for patient in IN_SCOPE for coded in codes_of(k, "mr-chest")}
    assert code == 1 and set(lines) == expected and len(lines) == len(expected) == 4 * 9
    assert f"{len(expected)} changed outcome(s):" in out
    assert "raise the version in release.toml" in out  # content changed, version not
    review = markdown.read_text(encoding="utf-8")
    assert "| demo-girl-7, CPT 71550 | order try-71550 | warning → info |  | not-appropriate → appropriate |" in review
    assert review.count("\n| demo-") == len(expected) and "## Sign-off" in review


def test_a_changed_summary_prints_only_the_summaries(tmp_path, capsys, k):
    old = k.procedures["ct-chest"].summary
    new = changed_copy(tmp_path, "procedures.toml", f'summary = "{old}"', 'summary = "CT chest: not for staging."')
    code, lines, _out = diff(capsys, new)
    assert code == 1
    assert set(lines) == {f"- {patient}, {coded} (order try-{coded.split()[-1]}): summary {old} -> CT chest: not for "
                          "staging." for patient in IN_SCOPE for coded in codes_of(k, "ct-chest")}


def test_the_same_content_changes_nothing(tmp_path, capsys):
    new = tmp_path / "same"
    shutil.copytree(default_directory(), new)
    code, lines, out = diff(capsys, new)
    assert (code, lines) == (0, [])
    assert out.rstrip().endswith("No outcome changes.")
    assert "Corpus: " in out and "hook calls" in out and "raise the version" not in out


def test_an_invalid_folder_is_refused_with_the_file_and_field(tmp_path, capsys):
    new = changed_copy(tmp_path, "scenario.toml", 'indicator = "warning"', 'indicator = "hard-stop"')
    assert cli.main(["knowledge", "diff", str(default_directory()), str(new)]) == 2
    assert "INVALID: scenario.toml: ratings.usually-not-appropriate.indicator" in capsys.readouterr().out
    assert cli.main(["knowledge", "check", str(new)]) == 1
    assert "INVALID: scenario.toml" in capsys.readouterr().out


def test_check_lists_every_code_that_is_not_verified(capsys, k):
    assert cli.main(["knowledge", "check", str(default_directory())]) == 0
    out = capsys.readouterr().out
    assert f"valid. Release {k.release.version}, digest {k.release.digest}" in out
    codes = [c for p in k.procedures.values() for c in p.codes] + [c for d in k.diagnosis_lists.values() for c in d.codes]
    unverified = [c for c in codes if c.status != "VERIFIED"]
    assert f"{len(unverified)} codes are not VERIFIED:" in out
    listed = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(listed) == len(unverified) and not any(line.split()[0] == "VERIFIED" for line in listed)
    assert "  VERIFIED-moderate  procedures.mr-chest: CPT 71550 MRI chest, without contrast" in listed
