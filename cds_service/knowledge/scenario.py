"""Reader of scenario.toml: the ACR topic, the sources, the rating vocabulary, the radiation
levels, the variants and the texts every card carries."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .model import SEXES, RadiationLevel, Rating, Source, Topic, Variant
from .toml_file import TomlFile

INDICATORS = ("info", "warning", "critical")
PAMA_CODES = ("appropriate", "not-appropriate", "no-criteria-apply")
TEXTS = ("scope_caveat", "disclaimer", "source_note", "card_note")  # [texts] the cards and pages need


@dataclass(frozen=True)
class Scenario:
    topic: Topic
    acr_category_system: str
    sources: Mapping[str, Source]
    ratings: Mapping[str, Rating]
    rrl: Mapping[str, RadiationLevel]
    variants: tuple[Variant, ...]
    texts: Mapping[str, str]


def read(f: TomlFile) -> Scenario:
    s = f.data
    topic_table = f.get(s, "topic", "", dict)
    topic = Topic(*(f.get(topic_table, k, "topic") for k in ("title", "label", "url", "topic_system", "scope_label")))
    acr_category_system = f.get(topic_table, "acr_category_system", "topic")
    sources = {sid: Source(sid, f.get(t, "title", f"sources.{sid}"), f.get(t, "publisher", f"sources.{sid}"))
               for sid, t in f.get(s, "sources", "", dict).items()}
    ratings = {}
    for rid, t in f.get(s, "ratings", "", dict).items():
        field = f"ratings.{rid}"
        indicator = f.one_of(t, "indicator", field, INDICATORS, "{value!r} is not info, warning or critical")
        pama = f.one_of(t, "pama", field, PAMA_CODES, "{value!r} is not a pama-rating code")
        ratings[rid] = Rating(rid, f.get(t, "label", field), indicator, pama, f.get(t, "recommend", field, bool))
    rrl = {}
    for key, t in f.get(s, "rrl", "", dict).items():
        if not key.isdigit():
            raise f.fail(f"rrl.{key}", "a radiation level is a number")
        rrl[key] = RadiationLevel(int(key), f.get(t, "symbol", f"rrl.{key}"), f.get(t, "peds_range", f"rrl.{key}"),
                                  f.get(t, "words", f"rrl.{key}", required=False))
    variants = []
    for i, t in enumerate(f.get(s, "variants", "", list)):
        field = f"variants[{i}]"
        sex = f.one_of(t, "sex", field, SEXES)
        source = f.one_of(t, "source", field, sources, "unknown source {value!r}")
        variants.append(Variant(f.get(t, "id", field), f.get(t, "label", field), sex, source,
                                f.strings(t, "inclusion", field), f.strings(t, "exclusion", field)))
    if len({v.id for v in variants}) != len(variants):
        raise f.fail("variants", "duplicate variant id")
    texts_table = f.get(s, "texts", "", dict)
    texts = {k: f.get(texts_table, k, "texts") for k in (*TEXTS, *texts_table)}
    return Scenario(topic, acr_category_system, sources, ratings, rrl, tuple(variants), texts)
