"""services.access: id validation and length-preserving identity masking of free text."""
from __future__ import annotations

import pytest

from hotline_api.services import access
from hotline_api.services.access import IdentityTerms, mask_text_aligned, mask_transcript


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "", "x" * 36, "0" * 32, None, 5,
                                 "{12345678-1234-4234-8234-123456789abc}", "12345678-1234-4234-8234-123456789abc/.."])
def test_check_id_refuses_anything_but_a_uuid(bad):
    with pytest.raises(access.NotVisible):
        access.check_id(bad)


def test_check_id_canonical():
    assert access.check_id("12345678-1234-4234-8234-123456789ABC") == "12345678-1234-4234-8234-123456789abc"


@pytest.mark.parametrize("text,expect", [
    ("我叫凌小明电话13812340918", "我叫凌**电话138******18"),
    ("我 叫 凌 小 明 电话 1 3 8 1 2 3 4 0 9 1 8", "我 叫 凌 * * 电话 1 3 8 * * * * * * 1 8"),
    ("我的名字是欧阳大伟", "我的名字是欧阳**"),
    ("举报金额一百二十万元", "举报金额一百二十万元"),  # amounts are not phone numbers
])
def test_mask_text_aligned_keeps_positions(text, expect):
    out = mask_text_aligned(text)
    assert out == expect and len(out) == len(text)


def test_known_terms_are_masked_anywhere():
    terms = IdentityTerms(names=["凌小明"], phones=["13812340918"])
    out = mask_text_aligned("刚才那位凌小明说他的号码是138 1234 0918", terms)
    assert "小明" not in out and "1234" not in out and len(out) == len("刚才那位凌小明说他的号码是138 1234 0918")


def test_mask_transcript_words_follow_text():
    doc = {"text": "我叫凌小明", "channels": [{"segments": [{"text": "我叫凌小明", "words": [
        {"word": "我叫", "start": 0.0, "end": 0.5}, {"word": "凌小明", "start": 0.5, "end": 1.0}]}]}]}
    out = mask_transcript(doc, IdentityTerms([], []))
    words = out["channels"][0]["segments"][0]["words"]
    assert [x["word"] for x in words] == ["我叫", "凌**"] and words[1]["start"] == 0.5
    assert out["text"] == "我叫凌**" and doc["text"] == "我叫凌小明"  # the input is not modified
