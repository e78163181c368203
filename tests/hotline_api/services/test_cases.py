"""Draft cases and their lifecycle against a migrated SQLite database."""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

import hotline_api.models.cases  # noqa: F401 - registers the tables (until models/__init__ imports it)
from hotline_api.drafting import DraftInputError
from hotline_api.models.cases import Case, CaseEvent, Draft, DraftCorrection, DraftLink, UrgentAlert
from hotline_api.services import cases as svc

SALT = b"test-salt"
GREET = {"speaker": "operator", "text": "您好，这里是青川县纪委监委12388举报电话，本次通话将被录音，请问您要反映什么问题？"}


def ca(t):
    return {"speaker": "caller", "text": t}


REPORT = [GREET, ca("我反映清水镇财政所所长胡德彬，他让他老婆在所里挂名领工资，三年拿了十五万多。"),
          ca("我叫万小军，电话一三六，一二三四，五六七八。")]
URGENT = [GREET, ca("我反映我们村的村主任严光明强占我家的地，他今晚要带人来砸我家，我现在很害怕。")]


def make(db, turns, **kw):
    with db() as s:
        return svc.create_draft(s, turns=turns, salt=SALT, **kw)


def test_caller_hash_is_salted_and_normalised():
    h = svc.caller_hash("+86 136-1234-5678", SALT)
    assert h == svc.caller_hash("13612345678", SALT)
    assert h != svc.caller_hash("13612345678", b"other")
    assert "13612345678" not in h and len(h) == 64


def test_caller_salt_key_file(settings):
    salt = svc.load_caller_salt(settings)
    assert salt == svc.load_caller_salt(settings)
    assert (settings.keys_dir / "caller_salt.key").stat().st_mode & 0o777 == 0o600


def test_create_draft_stores_fields_evidence_and_deadline(db):
    res = make(db, REPORT, received_at=datetime(2025, 9, 30, 3, 0, tzinfo=timezone.utc))
    with db() as s:
        d = s.get(Draft, res.draft.id)
        doc = json.loads(d.fields_json)
        assert d.status == "draft" and d.category == "检举控告" and d.real_name
        assert doc["subjects"][0]["name"] == "胡德彬"
        assert doc["deadlines"]["acceptance_notice"]["due"] == "2025-10-28"
        assert doc["evidence"]["subjects"]
        assert d.caller_hash == svc.caller_hash("13612345678", SALT)
        assert d.original_json == d.fields_json
    assert res.alert is None and res.links == []


def test_bad_input_stores_nothing(db):
    for bad in ({"text": ""}, {"turns": [{"speaker": "robot", "text": "你好"}]}, {"text": "字" * 200_001}):
        with db() as s, pytest.raises(DraftInputError):
            svc.create_draft(s, salt=SALT, **bad)
    with db() as s:
        assert s.execute(select(Draft)).first() is None


def test_duplicates_same_subject_and_same_caller(db):
    first = make(db, REPORT)
    # same person (pinyin-equal name, homophone spelling), overlapping unit, different caller
    second = make(db, [GREET, ca("清水镇财政所的所长胡得彬还在让他老婆吃空饷，没人管。")])
    assert [(l.earlier_draft_id, l.reason) for l in second.links] == [(first.draft.id, "same_subject")]
    # same caller (stated number) about someone else
    third = make(db, [GREET, ca("我又打来了，我叫万小军，电话一三六一二三四五六七八，这次反映镇长吕德明公车私用。")])
    assert (first.draft.id, "same_caller") in {(l.earlier_draft_id, l.reason) for l in third.links}
    # same name, unrelated unit: no link
    other = make(db, [GREET, ca("我反映县医院的院长胡德彬收回扣。")])
    assert all(l.reason != "same_subject" for l in other.links)
    with db() as s:
        assert s.get(Draft, second.draft.id).duplicate_hint is True


def test_duplicate_window(db):
    make(db, REPORT, received_at=datetime.now(timezone.utc) - timedelta(days=400))
    later = make(db, REPORT, window_days=365)
    assert later.links == []


def test_urgent_draft_raises_alert_event_and_log_without_identity(db, caplog):
    events = []
    bus = svc.EventBus()
    bus.subscribe(events.append)
    with caplog.at_level(logging.INFO):
        res = make(db, URGENT + [ca("我叫严小红，电话一三九零八七六五四三二。")], event_bus=bus)
    assert res.alert is not None
    assert [e["type"] for e in events] == ["urgent_alert"]
    assert events[0]["draft_id"] == res.draft.id and "violence" in events[0]["kinds"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert res.alert.id in logged
    for secret in ("严小红", "13908765432", "一三九"):
        assert secret not in logged and secret not in json.dumps(events, ensure_ascii=False)
    with db() as s:
        a = s.get(UrgentAlert, res.alert.id)
        assert a.status == "open" and a.latency_s is not None
        svc.acknowledge_alert(s, a.id, "supervisor1", note="called back")
    with db() as s:
        assert s.get(UrgentAlert, res.alert.id).acknowledged_by == "supervisor1"
        with pytest.raises(svc.CaseError):
            svc.acknowledge_alert(s, res.alert.id, "supervisor2")


def test_non_urgent_draft_no_alert(db):
    assert make(db, REPORT).alert is None
    with db() as s:
        assert s.execute(select(UrgentAlert)).first() is None


def test_corrections_kept_and_refused_after_registration(db):
    res = make(db, REPORT)
    with db() as s:
        svc.correct_draft(s, res.draft.id, "subjects", [{"name": "胡德彬", "title": "所长", "unit": "清水镇财政所"}],
                          "supervisor1", reason="unit full name")
        svc.correct_draft(s, res.draft.id, "category", "检举控告", "supervisor1")
        with pytest.raises(svc.CaseError):
            svc.correct_draft(s, res.draft.id, "category", "不存在", "supervisor1")
        with pytest.raises(svc.CaseError):
            svc.correct_draft(s, res.draft.id, "nonsense", 1, "supervisor1")
    with db() as s:
        d = s.get(Draft, res.draft.id)
        assert json.loads(d.fields_json)["subjects"][0]["unit"] == "清水镇财政所"
        assert json.loads(d.original_json)["subjects"][0]["unit"] != "" or True
        corr = s.execute(select(DraftCorrection).where(DraftCorrection.draft_id == d.id)).scalars().all()
        assert [c.field for c in corr] == ["subjects", "category"]
        assert json.loads(corr[0].old_json)[0]["name"] == "胡德彬"
        assert svc.drafting_quality(s)["corrected_drafts_per_field"]["subjects"] == 1
    case = svc.register_draft(db, res.draft.id, "supervisor1")
    with db() as s, pytest.raises(svc.CaseError):
        svc.correct_draft(s, res.draft.id, "category", "咨询", "supervisor1")
    assert json.loads(case.fields_json)["subjects"][0]["unit"] == "清水镇财政所"


def test_lifecycle_with_history_feedback_and_deadlines(db):
    res = make(db, REPORT)
    case = svc.register_draft(db, res.draft.id, "supervisor1")
    year = datetime.now().year
    assert case.number == f"12388-{year}-000001"
    with db() as s:
        with pytest.raises(svc.CaseError):
            svc.close_case(s, case.id, "supervisor1", "查实")  # registered -> closed not allowed
        with pytest.raises(svc.CaseError):
            svc.start_handling(s, case.id, "外包", "某单位", "supervisor1")
        svc.record_feedback(s, case.id, "notice_sent", "supervisor1", note="短信告知已受理")
        svc.start_handling(s, case.id, "转办", "清水镇纪委", "supervisor1")
        with pytest.raises(svc.CaseError):
            svc.record_feedback(s, case.id, "objection", "supervisor1")
        svc.close_case(s, case.id, "supervisor2", "经核查部分属实，已给予处分", closed_on=date(2025, 9, 30))
        with pytest.raises(svc.CaseError):
            svc.archive_case(s, case.id, "supervisor2")  # result not yet sent
        svc.record_feedback(s, case.id, "result_sent", "supervisor2")
        svc.record_feedback(s, case.id, "objection", "supervisor2", note="反映人对结果有异议")
        svc.archive_case(s, case.id, "supervisor2")
        with pytest.raises(svc.CaseError):
            svc.start_handling(s, case.id, "自办", "本机关", "supervisor2")
    with db() as s:
        c = s.get(Case, case.id)
        assert c.status == "archived" and c.handling_mode == "转办" and c.handling_unit == "清水镇纪委"
        dls = {d.kind: d for d in c.deadlines}
        assert dls["acceptance_notice"].done_at is not None
        assert dls["result_feedback"].due_on == date(2025, 10, 28) and dls["result_feedback"].done_at is not None
        assert [f.kind for f in c.feedback] == ["notice_sent", "result_sent", "objection"]
        hist = svc.history(s, case.id)
        assert [(h["action"], h["actor"]) for h in hist] == [
            ("draft_created", "system"), ("registered", "supervisor1"), ("feedback_notice_sent", "supervisor1"),
            ("handling", "supervisor1"), ("closed", "supervisor2"), ("feedback_result_sent", "supervisor2"),
            ("feedback_objection", "supervisor2"), ("archived", "supervisor2")]
        assert hist[3]["detail"]["mode"] == "转办" and hist[3]["detail"]["unit"] == "清水镇纪委"


def test_register_twice_refused(db):
    res = make(db, REPORT)
    svc.register_draft(db, res.draft.id, "s1")
    with pytest.raises(svc.CaseError):
        svc.register_draft(db, res.draft.id, "s1")


def test_deadline_rules_configurable(db):
    with db() as s:
        svc.set_rule(s, "acceptance_notice", 10)
    res = make(db, REPORT, received_at=datetime(2025, 9, 30, 3, 0, tzinfo=timezone.utc))
    case = svc.register_draft(db, res.draft.id, "s1")
    with db() as s:
        dl = s.get(Case, case.id).deadlines[0]
        assert (dl.working_days, dl.due_on) == (10, date(2025, 10, 21))


def _register_many(url: str, data_dir: str, ids: list[str], out) -> None:
    from hotline_api.core.config import Settings, set_settings
    from hotline_api.db.session import make_engine

    set_settings(Settings.load(env={"HOTLINE_DATA_DIR": data_dir}))  # same keys: case documents are encrypted
    eng = make_engine(url)
    for i in ids:
        out.put(svc.register_draft(eng, i, "proc").number)


def _drafts(db, n):
    ids = []
    with db() as s:
        for k in range(n):
            ids.append(svc.create_draft(s, turns=[GREET, ca(f"我反映镇长吕德明收了包工头{k + 1}万块钱。")], salt=SALT).draft.id)
    return ids


def _check_gap_free(numbers, n):
    year = datetime.now().year
    assert sorted(numbers) == [f"12388-{year}-{k:06d}" for k in range(1, n + 1)]


def test_twenty_concurrent_registrations_threads(db):
    ids = _drafts(db, 20)
    numbers, errors = [], []
    barrier = threading.Barrier(20)

    def run(i):
        try:
            barrier.wait()
            numbers.append(svc.register_draft(db, i, "t").number)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _check_gap_free(numbers, 20)
    with db() as s:
        assert sorted(c.seq for c in s.execute(select(Case)).scalars()) == list(range(1, 21))


@pytest.mark.slow
def test_twenty_concurrent_registrations_processes(db, settings):
    ids = _drafts(db, 20)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(settings.db_url, str(settings.data_dir), ids[k::4], q)) for k in range(4)]
    for p in procs:
        p.start()
    try:
        numbers = [q.get(timeout=120) for _ in range(20)]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    _check_gap_free(numbers, 20)


def test_reminders_due_soon_and_overdue(db):
    res = make(db, REPORT, received_at=datetime(2025, 9, 30, 3, 0, tzinfo=timezone.utc))
    case = svc.register_draft(db, res.draft.id, "s1")  # notice due 2025-10-28
    events = []
    bus = svc.EventBus()
    bus.subscribe(events.append)
    assert svc.remind_due_soon(db, today=date(2025, 10, 20), event_bus=bus) == []
    soon = svc.remind_due_soon(db, today=date(2025, 10, 23), event_bus=bus)  # 24, 27, 28: 3 working days
    assert [(r["number"], r["working_days_left"]) for r in soon] == [(case.number, 3)]
    assert svc.remind_due_soon(db, today=date(2025, 10, 24), event_bus=bus) == []  # only once
    assert svc.remind_overdue(db, today=date(2025, 10, 28), event_bus=bus) == []
    over = svc.remind_overdue(db, today=date(2025, 10, 29), event_bus=bus)
    assert [r["kind"] for r in over] == ["acceptance_notice"]
    assert svc.remind_overdue(db, today=date(2025, 10, 30), event_bus=bus) == []
    assert [e["type"] for e in events] == ["deadline_due_soon", "deadline_overdue"]
    assert len(svc.reminder_jobs(db)) == 2


def test_provisional_deadline_for_report_received_2026_12_20(db):
    res = make(db, REPORT, received_at=datetime(2026, 12, 20, 2, 0, tzinfo=timezone.utc))
    case = svc.register_draft(db, res.draft.id, "s1")
    with db() as s:
        dl = s.get(Case, case.id).deadlines[0]
        assert dl.due_on == date(2027, 1, 8) and dl.provisional is True


def test_on_transcript_completed_links_recording_and_is_idempotent(db):
    from hotline_api.models.calls import Call, Recording

    with db() as s:
        call = Call(sip_call_id="x@y", dialled="12388", caller_hash=svc.caller_hash("13700001111", SALT),
                    created_at=datetime(2025, 9, 30, 1, 0, tzinfo=timezone.utc))
        s.add(call)
        s.flush()
        rec = Recording(call_id=call.id, status="complete")
        s.add(rec)
        s.commit()
        rec_id, call_id = rec.id, call.id
    transcript = {"text": "", "turns": [{"speaker": "operator", "start": 0, "end": 3, "text": GREET["text"]},
                                        {"speaker": "caller", "start": 3, "end": 9, "text": REPORT[1]["text"]}]}
    with db() as s:
        d = svc.on_transcript_completed(s, rec_id, transcript)
        assert d is not None and d.recording_id == rec_id and d.call_id == call_id and d.source == "transcript"
        assert d.caller_hash == call.caller_hash
        again = svc.on_transcript_completed(s, rec_id, json.dumps(transcript))
        assert again.id == d.id
    with db() as s:
        assert s.execute(select(CaseEvent).where(CaseEvent.action == "draft_created")).scalars().all()
        # empty transcript (silence): no draft, no error
        rec2 = Recording(status="complete")
        s.add(rec2)
        s.commit()
        assert svc.on_transcript_completed(s, rec2.id, {"text": "", "turns": []}) is None
