"""Reporter identity: masked in API JSON (calls, transcripts, drafts, cases), and never in the logs;
shown to a holder of ``identity``, and then audited."""
from __future__ import annotations

import logging

from hotline_api.services import audit, cases
from tests.hotline_api.api.conftest import CALLER, CALLER_SAYS, REPORTER

MASKED_PHONE = "138******18"
MASKED_NAME = REPORTER[0] + "**"


def _actions(w, actor):
    with w.db() as s:
        return [e["action"] for e in audit.iter_entries(s) if e["actor_name"] == actor]


def _no_identity(text: str) -> None:
    assert CALLER not in text and REPORTER not in text
    assert "1381234" not in text and "小明" not in text


def test_calls_list_masks_caller_unless_identity(world):
    w = world
    items = w.client.get("/api/calls", headers=w.h("supA")).json()["items"]
    mine = next(c for c in items if c["recording_id"] == w.rec)
    assert mine["caller"] == MASKED_PHONE and mine["identity_masked"] is True
    _no_identity(w.client.get("/api/calls", headers=w.h("supA")).text)
    assert "identity.view" not in _actions(w, "supA")
    items = w.client.get("/api/calls", headers=w.h("supId")).json()["items"]
    assert next(c for c in items if c["recording_id"] == w.rec)["caller"] == CALLER
    assert "identity.view" in _actions(w, "supId")


def test_transcript_text_and_words_are_masked(world):
    w = world
    r = w.client.get(f"/api/recordings/{w.rec}/transcript", headers=w.h("mgr1"))
    assert r.status_code == 200
    _no_identity(r.text)
    doc = r.json()
    assert doc["identity_masked"] is True
    caller = doc["channels"][0]["segments"][0]
    assert MASKED_NAME in caller["text"] and MASKED_PHONE in caller["text"]
    assert len(caller["text"]) == len(CALLER_SAYS)  # positions kept for the player's highlighting
    assert "".join(x["word"] for x in caller["words"]) == caller["text"]
    assert [x["start"] for x in caller["words"]] == [round(i * 0.25, 2) for i in range(len(CALLER_SAYS))]
    assert MASKED_PHONE in doc["text"] and MASKED_PHONE in doc["turns"][1]["text"]
    assert "王局长" in caller["text"] and "二十万元" in caller["text"]  # the allegation itself stays readable
    assert "transcript.view" in _actions(w, "mgr1") and "identity.view" not in _actions(w, "mgr1")


def test_transcript_with_identity_is_shown_and_audited(world):
    w = world
    doc = w.client.get(f"/api/recordings/{w.rec}/transcript", headers=w.h("supId")).json()
    assert doc["identity_masked"] is False
    assert doc["channels"][0]["segments"][0]["text"] == CALLER_SAYS
    acts = _actions(w, "supId")
    assert "transcript.view" in acts and "identity.view" in acts


def test_spoken_digits_and_spaced_asr_text_are_masked(world):
    """Vosk text: space-separated words, the number spoken digit by digit."""
    w = world
    from hotline_api.services import transcription
    from tests.hotline_api.api.conftest import transcript_doc

    spoken = "我 叫 凌 小 明 电话 幺 三 八 一 二 三 四 零 九 一 八 我 要 举报"
    with w.db() as s:
        transcription.store_transcript(s, w.other_rec, None, transcript_doc(spoken))
        s.commit()
    doc = w.client.get(f"/api/recordings/{w.other_rec}/transcript", headers=w.h("op2")).json()
    text = doc["channels"][0]["text"]
    assert "凌 * *" in text and "幺 三 八 * * * * * * 一 八" in text and len(text) == len(spoken)
    assert "小" not in text and "一 二 三 四" not in text


def test_draft_fields_and_text_are_masked(world):
    w = world
    r = w.client.get(f"/api/drafts/{w.draft}", headers=w.h("op1"))
    assert r.status_code == 200
    _no_identity(r.text)
    d = r.json()
    assert d["reporter_name"] == MASKED_NAME and d["reporter_phone"] == MASKED_PHONE and d["identity_masked"]
    assert d["real_name"] is True and d["category"] == "检举控告"
    # evidence spans still point at the same places of the (masked) input text
    assert len(d["input_text"]) == len(CALLER_SAYS)
    a, b = d["evidence"]["reporter_phone"][0]
    assert d["input_text"][a:b] == MASKED_PHONE
    # corrections of identity fields are masked too
    w.client.patch(f"/api/drafts/{w.draft}", headers=w.h("op1"), json={"changes": {"reporter_phone": "13912345678"}})
    r = w.client.get(f"/api/drafts/{w.draft}", headers=w.h("supA"))
    assert "13912345678" not in r.text and CALLER not in r.text
    corr = r.json()["corrections"][0]
    assert corr == {**corr, "field": "reporter_phone", "old": MASKED_PHONE, "new": "139******78"}
    listed = w.client.get("/api/drafts", headers=w.h("supId")).text  # lists stay masked, even with identity
    assert "13912345678" not in listed and REPORTER not in listed


def test_draft_with_identity_is_shown_and_audited(world):
    w = world
    d = w.client.get(f"/api/drafts/{w.draft}", headers=w.h("supId")).json()
    assert d["reporter_name"] == REPORTER and d["reporter_phone"] == CALLER and d["input_text"] == CALLER_SAYS
    acts = _actions(w, "supId")
    assert "draft.view" in acts and "identity.view" in acts


def test_case_masking(world):
    w = world
    with w.db() as s:
        c = cases.register_draft(s.get_bind(), w.draft, "supA")
    r = w.client.get(f"/api/cases/{c.id}", headers=w.h("supA"))
    _no_identity(r.text)
    assert r.json()["reporter_phone"] == MASKED_PHONE
    assert r.json()["history"][0]["action"] == "draft_created"
    _no_identity(w.client.get("/api/cases", headers=w.h("supId")).text)
    assert w.client.get(f"/api/cases/{c.id}", headers=w.h("supId")).json()["reporter_name"] == REPORTER
    assert "identity.view" in _actions(w, "supId")


def test_no_identity_in_logs(world, caplog):
    """Every flow that handles identity, with all loggers at DEBUG: the number and name never
    reach a log record."""
    w = world
    caplog.set_level(logging.DEBUG)
    for who in ("supA", "supId"):
        w.client.get("/api/calls", headers=w.h(who))
        w.client.get(f"/api/recordings/{w.rec}/transcript", headers=w.h(who))
        w.client.get(f"/api/drafts/{w.draft}", headers=w.h(who))
        w.client.get(f"/api/recordings/{w.rec}/audio", headers={**w.h(who), "Range": "bytes=0-99"})
    w.client.patch(f"/api/drafts/{w.draft}", headers=w.h("supA"), json={"changes": {"reporter_name": "欧阳大伟"}})
    r = w.client.post("/api/exports", headers=w.h("supId"),
                      json={"object_type": "recording", "object_ids": [w.rec], "reason": "审查"})
    assert w.client.post(f"/api/exports/{r.json()['id']}/approve", headers=w.h("supA")).status_code == 200
    assert w.client.get(f"/api/exports/{r.json()['id']}/download", headers=w.h("supId")).status_code == 200
    assert caplog.records, "nothing was logged at all: the capture is not working"
    for rec in caplog.records:
        msg = rec.getMessage()
        assert CALLER not in msg and REPORTER not in msg and "欧阳大伟" not in msg, msg
    # nor in the audit trail's text
    with w.db() as s:
        dump = str(list(audit.iter_entries(s)))
    assert CALLER not in dump and REPORTER not in dump and "欧阳大伟" not in dump
