"""Identity masking in fields, free text (incl. ASR transcripts), logs; reveal with `identity` is audited."""
from __future__ import annotations

import io
import logging

import pytest

from hotline_api.services import audit, auth, masking
import tests.hotline_api.services.govtest_util  # noqa: F401


@pytest.mark.parametrize("raw,masked", [
    ("13812340918", "138******18"), ("138-1234-0918", "138******18"), ("+8613812340918", "861********18"),
    ("02161234567", "021******67"), ("62345678", "62****78"), ("12", "**"),
])
def test_mask_phone(raw, masked):
    assert masking.mask_phone(raw) == masked


@pytest.mark.parametrize("raw,masked", [("凌小明", "凌**"), ("凌明", "凌*"), ("欧阳小明", "欧阳**"), ("欧阳", "欧*"),
                                        ("凌 小 明", "凌**"), ("Alice", "A****")])
def test_mask_name(raw, masked):
    assert masking.mask_name(raw) == masked


def test_mask_uri_and_fields():
    assert masking.mask_uri("sip:13812340918@10.0.0.1:5060") == "sip:138******18@10.0.0.1:5060"
    assert masking.mask_uri("sip:alice@example.org") == "sip:a***@example.org"
    d = masking.mask_identity_fields({"caller_number": "13812340918", "reporter_name": "凌小明",
                                      "reporter_phone": None, "category": "检举控告"})
    assert d == {"caller_number": "138******18", "reporter_name": "凌**", "reporter_phone": None, "category": "检举控告"}


@pytest.mark.parametrize("text,gone,kept", [
    ("我的电话是13812340918，请回电", ["13812340918"], ["138******18", "请回电"]),
    ("电话 138 1234 0918 谢谢", ["1234"], ["138", "18"]),
    ("我 的 号码 是 幺 三 八 一 二 三 四 零 九 一 八", ["二 三 四 零", "一二三四"], ["幺三八", "一八"]),
    ("手机一三八一二三四零九一八", ["一二三四零"], ["一三八", "一八"]),
    ("我叫凌小明，举报某局长", ["凌小明", "小明"], ["凌**", "某局长"]),
    ("我 叫 凌 小 明 家 住", ["小 明"], ["凌**"]),
    ("我的名字是欧阳小明", ["小明"], ["欧阳**"]),
    ("我叫凌小明举报", ["小明"], ["凌**举报"]),
    ("我姓凌", [], ["我姓凌"]),
    ("收了12000000元好处，还有三十多万", [], ["12000000元", "三十多万"]),
    ("身份证号 110101199003071234", ["19900307"], []),
])
def test_mask_text(text, gone, kept):
    out = masking.mask_text(text)
    for g in gone:
        assert g not in out, out
    for k in kept:
        assert k in out, out


def test_known_names_and_phones_masked_anywhere_in_transcript():
    t = "举报人 凌 小明 说 凌小明 的 电话 是 一八六 幺二三四 五六七八 后来 又说 18612345678"
    out = masking.mask_text(t, names=["凌小明"], phones=["18612345678"])
    assert "小明" not in out and "12345678" not in out and "幺二三四" not in out
    assert out.count("凌**") == 2 and "186******78" in out


def test_logs_are_masked():
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    logger = logging.getLogger("test.masking.capture")
    logger.addHandler(handler)
    logger.propagate = False
    masking.install_log_masking(logger)
    logger.warning("caller %s said 我叫凌小明", "13812340918")
    logger.warning("plain line %d", 5)
    out = buf.getvalue()
    assert "13812340918" not in out and "小明" not in out and "138******18" in out and "plain line 5" in out


def test_reveal_needs_identity_and_is_audited(settings, db):
    with db() as s:
        sup, _ = auth.create_user(s, "sup_id", "supervisor", "correct horse battery", permissions=["identity"])
        mgr, _ = auth.create_user(s, "mgr_no", "recording_manager", "correct horse battery")
        fields = {"caller_number": "13812340918", "reporter_name": "凌小明"}
        assert masking.reveal(s, mgr, "call", "c1", fields) == {"caller_number": "138******18", "reporter_name": "凌**"}
        assert masking.reveal(s, sup, "call", "c1", fields, ip="127.0.0.1", reason="核实身份") == fields
        s.commit()
        views = [e for e in audit.iter_entries(s) if e["action"] == "identity.view"]
        assert len(views) == 1 and views[0]["actor_name"] == "sup_id" and views[0]["reason"] == "核实身份"
        assert "13812340918" not in str(views[0])


def test_record_ids_in_log_lines_stay_whole_while_phones_are_masked():
    from hotline_api.services.masking import mask_text

    line = "recording 13f35b47-2231-4811-9c1a-000012345678 from 13800138000 done"
    out = mask_text(line)
    assert "13f35b47-2231-4811-9c1a-000012345678" in out
    assert "13800138000" not in out and "138******00" in out
