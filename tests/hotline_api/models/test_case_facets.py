"""case_facets, the searchable copy of a case's issue types and places, from its fields document."""
from __future__ import annotations

import json

from hotline_api.models.cases import FACET_KEYS, facets_of


def test_values_are_trimmed_then_deduplicated_and_empty_ones_dropped():
    key = FACET_KEYS[0]
    doc = {key: ["甲类", " 甲类 ", "甲类\u3000".strip(), "", "   ", None, 3, "乙类"]}
    assert facets_of(json.dumps(doc)) == [(key, "甲类"), (key, "乙类")]


def test_every_facet_key_and_long_values_cut_to_the_column():
    doc = {k: [f"值{i}"] for i, k in enumerate(FACET_KEYS)}
    doc[FACET_KEYS[-1]].append("长" * 300)
    out = facets_of(json.dumps(doc))
    assert [k for k, _ in out[: len(FACET_KEYS)]] == list(FACET_KEYS)
    assert out[-1] == (FACET_KEYS[-1], "长" * 128)
    assert facets_of(None) == [] and facets_of("{}") == []
