"""Seed data for the console tests, through the project's own services: users (services.auth),
calls and recordings (CallStore.apply of telephony events + storage.on_recording_completed, i.e.
real encrypted audio assigned to the manager on duty), transcripts (transcription.store_transcript
in the documented JSON shape), drafts (services.cases.create_draft) and cases (register_draft).

All names, places and sentences here are invented for these tests."""
from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import soundfile as sf

from hotline_api.models.calls import Call
from hotline_api.services import auth, cases, review, pipeline, storage, transcription
from hotline_api.services.call_store import CallStore
from telephony import events as ev

PW = "console-pass-2026"
TZ = ZoneInfo("Asia/Shanghai")

USERS = {
    "operator": ("op1", "接线员一", None, ()),
    "operator2": ("op2", "接线员二", None, ()),
    "recording_manager": ("mgr1", "录音管理员甲", None, ()),
    "supervisor": ("sup1", "值班主管", None, ("identity",)),
    "auditor": ("aud1", "审计员", None, ()),
    "admin": ("adm1", "系统管理员", None, ()),
}

TEXTS = [
    "我要反映青石镇水利站站长周明远，他在修水渠的工程里收了好处费五万元。我叫陈立华，电话13912345678。",
    "东岭乡白沙村的村支书李向东把低保名额给了自己亲戚，还挪用了修路的钱三十多万。我不方便留名字。",
    "我举报南坪镇卫生院院长赵建国，他收受药品回扣，大概有十几万。我是卫生院职工，我姓孙，电话13700001111。",
    "河湾村主任刘海波说如果再举报就要报复我，他今晚要带人上门砸我家，我很害怕。",
    "杨树村会计郑志强私分集体土地补偿款，村里人都知道，金额有二十万左右。",
    "我想问一下上次反映的事情现在有没有进度，什么时候给我答复。",
]

# transcript of the review test recording: caller on channel 0, operator on channel 1
CALLER_SEGMENTS = [(0.4, 3.6, "喂 你好 我要反映一个问题"), (8.2, 11.8, "青石镇水利站的站长收了好处费"),
                   (16.3, 19.7, "大概五万块钱 是去年修水渠的时候")]
OPERATOR_SEGMENTS = [(4.1, 7.6, "您好 这里是举报电话 请讲"), (12.2, 15.8, "请问是哪一年的事情"),
                     (20.1, 23.5, "好的 我们已经记录 会尽快处理")]


def create_users(factory, settings) -> dict[str, object]:
    out = {}
    with factory() as s:
        for key, (name, display, unit, perms) in USERS.items():
            role = "operator" if key.startswith("operator") else key
            u, _ = auth.create_user(s, name, role, PW, unit=unit, permissions=perms, display_name=display,
                                    settings=settings)
            out[key] = u
        review.set_roster(s, None, out["recording_manager"])
        from hotline_api.services import operators as ops

        for key in ("operator", "operator2"):
            ops.set_state(s, ops.ensure_operator(s, out[key]), "available")
        s.commit()
    return out


def wav_file(path: Path, seconds: float = 24.0, rate: int = 8000, seed: int = 0) -> str:
    """A 2-channel 16-bit WAV: tones on each channel (the caller's louder), written with soundfile."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    left = 0.35 * np.sin(2 * np.pi * 320 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)) + 0.02 * rng.standard_normal(t.size)
    right = 0.25 * np.sin(2 * np.pi * 540 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.stack([left, right], axis=1), -1, 1), rate, subtype="PCM_16", format="WAV")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store(factory, settings) -> CallStore:
    salt = cases.load_caller_salt(settings)
    return CallStore(factory, hash_caller=lambda n: cases.caller_hash(n, salt))


def add_recorded_call(factory, settings, ctx, at: datetime, *, kind: str = "call", seconds: float = 24.0,
                      caller: str = "13812345678", operator_id: str | None = None, seed: int = 0) -> tuple[str, str]:
    """A call as the agent reports it (events), its recording encrypted and assigned. Returns
    (call id, recording id)."""
    store = _store(factory, settings)
    call_id, rid = str(uuid.uuid4()), str(uuid.uuid4())
    spool = Path(settings.spool_dir) / f"{rid}.wav"
    store.apply(ev.CallStarted(call_id, f"{call_id}@test", f"sip:{caller}@127.0.0.1", caller, "12388", "w0", at,
                               channel=kind))
    store.apply(ev.CallAnswered(call_id, at + timedelta(seconds=1), rid, str(spool), 8000, 2))
    sha = wav_file(spool, seconds, seed=seed)
    end = at + timedelta(seconds=1 + seconds)
    store.apply(ev.CallEnded(call_id, end, "ended", 200, "BYE", "caller"))
    done = ev.RecordingCompleted(rid, call_id, str(spool), "complete", seconds, 8000, 2, sha, spool.stat().st_size,
                                 kind=kind, at=end)
    store.apply(done)
    pipeline.on_recording_completed(factory, ctx, done)
    if operator_id:
        with factory() as s:
            s.get(Call, call_id).operator_id = operator_id
            s.commit()
    return call_id, rid


def add_transcript(factory, rid: str, duration: float = 24.0) -> None:
    doc = {"duration": duration, "sample_rate": 8000, "model": "test-fixture",
           "channels": [{"channel": 0, "speaker": "caller",
                         "segments": [{"start": a, "end": b, "text": t, "words": []} for a, b, t in CALLER_SEGMENTS]},
                        {"channel": 1, "speaker": "operator",
                         "segments": [{"start": a, "end": b, "text": t, "words": []} for a, b, t in OPERATOR_SEGMENTS]}],
           "text": " ".join(t for _, _, t in sorted(CALLER_SEGMENTS + OPERATOR_SEGMENTS))}
    with factory() as s:
        transcription.store_transcript(s, rid, None, doc)
        s.commit()


def add_draft(factory, settings, text: str, *, rid: str | None = None, call_id: str | None = None,
              received_at: datetime | None = None) -> str:
    with factory() as s:
        res = cases.create_draft(s, text=text, recording_id=rid, call_id=call_id, received_at=received_at,
                                 source="transcript" if rid else "api", settings=settings)
        return res.draft.id


@dataclass
class MonthSeed:
    """What ``seed_month`` put in, counted on the seeding side (the expected dashboard figures)."""

    calls: int = 0
    voicemails: int = 0
    cases: int = 0
    real_name: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    by_day: dict[date, int] = field(default_factory=dict)
    case_numbers: list[str] = field(default_factory=list)


def seed_month(factory, settings, year: int, month: int, n_calls: int = 60, n_cases: int = 12,
               seed: int = 7) -> MonthSeed:
    """Calls (call/voicemail) spread over a month and registered cases received in it."""
    rng = random.Random(seed)
    out = MonthSeed()
    store = _store(factory, settings)
    first = date(year, month, 1)
    days = (date(year + (month == 12), month % 12 + 1, 1) - first).days
    for i in range(n_calls):
        d = first + timedelta(days=rng.randrange(days))
        local = datetime.combine(d, time(rng.randrange(0, 24), rng.randrange(60)), tzinfo=TZ)
        at = local.astimezone(timezone.utc)
        kind = "voicemail" if rng.random() < 0.3 else "call"
        cid = str(uuid.uuid4())
        number = f"139{rng.randrange(10**8):08d}"
        store.apply(ev.CallStarted(cid, f"{cid}@seed", f"sip:{number}@127.0.0.1", number, "12388", "w0", at, channel=kind))
        store.apply(ev.CallEnded(cid, at + timedelta(minutes=3), "ended", 200, "BYE", "caller"))
        out.voicemails += kind == "voicemail"
        out.calls += kind == "call"
        out.by_day[d] = out.by_day.get(d, 0) + 1
    for i in range(n_cases):
        d = first + timedelta(days=rng.randrange(days))
        received = datetime.combine(d, time(10, 0), tzinfo=TZ).astimezone(timezone.utc)
        texts = [t for j, t in enumerate(TEXTS) if j != 3]  # no urgent ones: their alerts are tested apart
        did = add_draft(factory, settings, texts[i % len(texts)], received_at=received)
        c = cases.register_draft(factory, did, "sup1", settings=settings)
        out.cases += 1
        out.real_name += bool(c.real_name)
        out.by_category[c.category] = out.by_category.get(c.category, 0) + 1
        out.case_numbers.append(c.number)
    return out
