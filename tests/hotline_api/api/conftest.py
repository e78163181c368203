"""A small world for the API tests: users of every role in two units, calls seeded through the
agent's events (CallStore.apply) with encrypted audio, a transcript in which the caller gives
name and number, a draft, and an app (create_app) under TestClient."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import hotline_api.models.asr  # noqa: F401 - registers the transcripts tables' ORM classes
import hotline_api.models.cases  # noqa: F401
import hotline_api.models.governance  # noqa: F401
from hotline_api.app import create_app
from hotline_api.db import crypto_types
from hotline_api.models.calls import Call
from hotline_api.services import auth, cases, review, pipeline, storage, transcription
from hotline_api.services.call_store import CallStore
from telephony import events as ev
from tests.hotline_api.services.govtest_util import wav_bytes

PW = "correct horse battery"
CALLER = "13812340918"
REPORTER = "凌小明"

# name, role, unit, permissions
USERS = [
    ("op1", "operator", "A", ()),
    ("op2", "operator", "A", ()),
    ("mgr1", "recording_manager", "A", ()),
    ("mgr2", "recording_manager", "B", ()),
    ("supA", "supervisor", "A", ()),
    ("supA2", "supervisor", "A", ()),
    ("supB", "supervisor", "B", ()),
    ("supId", "supervisor", "A", ("identity",)),
    ("aud", "auditor", None, ()),
    ("adm", "admin", None, ()),
]


def transcript_doc(text_caller: str) -> dict:
    """A transcript shaped like ``hotline transcribe --json`` (words as Vosk gives them for Chinese:
    one or a few characters each)."""
    words, t = [], 0.0
    for ch in text_caller:
        words.append({"word": ch, "start": round(t, 2), "end": round(t + 0.2, 2), "conf": 0.9})
        t += 0.25
    seg = {"start": 0.0, "end": round(t, 2), "text": text_caller, "words": words}
    op_seg = {"start": 0.0, "end": 1.0, "text": "您好这里是举报电话",
              "words": [{"word": "您好", "start": 0.0, "end": 0.4, "conf": 1.0},
                        {"word": "这里是", "start": 0.4, "end": 0.7, "conf": 1.0},
                        {"word": "举报电话", "start": 0.7, "end": 1.0, "conf": 1.0}]}
    return {"duration": round(t, 2), "sample_rate": 8000,
            "channels": [{"channel": 0, "speaker": "caller", "text": text_caller, "segments": [seg]},
                         {"channel": 1, "speaker": "operator", "text": op_seg["text"], "segments": [op_seg]}],
            "turns": [{"speaker": "operator", "start": 0.0, "end": 1.0, "text": op_seg["text"]},
                      {"speaker": "caller", "start": 0.0, "end": round(t, 2), "text": text_caller}],
            "text": op_seg["text"] + "\n" + text_caller, "rtf": 0.1, "model": "test"}


CALLER_SAYS = f"你好我叫{REPORTER}我的电话是{CALLER}我要举报青山镇王局长收受贿赂二十万元"


@dataclass
class World:
    settings: object
    db: object
    ctx: object
    client: TestClient
    users: dict
    tokens: dict
    rec: str = ""  # op1's call, in window, assigned to mgr1, with transcript + draft
    call: str = ""
    old_rec: str = ""  # op1's call that ended 30 h ago (window closed), assigned to mgr1
    other_rec: str = ""  # op2's call, assigned to mgr1
    b_rec: str = ""  # a unit-B call: operator none, assigned to mgr2
    draft: str = ""
    wav: bytes = b""
    extra: dict = field(default_factory=dict)

    def h(self, name: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def uid(self, name: str) -> str:
        return self.users[name]


def seed_call(db, settings, ctx, store: CallStore, *, at: datetime, operator_id: str | None, seconds: float = 2.0,
              seed: int = 0, caller: str = CALLER) -> tuple[str, str, bytes]:
    """A call through the agent's events, its WAV encrypted into storage and assigned for review."""
    call_id, rid = str(uuid.uuid4()), str(uuid.uuid4())
    data = wav_bytes(seconds, seed=seed)
    spool = Path(settings.spool_dir) / f"{rid}.wav"
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_bytes(data)
    import hashlib

    store.apply(ev.CallStarted(call_uuid=call_id, sip_call_id=f"{call_id}@test", caller_uri=f"sip:{caller}@127.0.0.1",
                               caller_number=caller, dialled="12388", worker_id="w0", at=at))
    store.apply(ev.CallAnswered(call_uuid=call_id, at=at, recording_id=rid, recording_path=str(spool),
                                sample_rate=8000, channels=2))
    end = at + timedelta(seconds=seconds)
    store.apply(ev.CallEnded(call_uuid=call_id, at=end, status="ended", hangup_cause=200, hangup_reason="BYE",
                             hung_up_by="caller"))
    done = ev.RecordingCompleted(recording_id=rid, call_uuid=call_id, path=str(spool), status="complete",
                                 duration=seconds, sample_rate=8000, channels=2,
                                 sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), at=end)
    store.apply(done)
    with db() as s:
        s.get(Call, call_id).operator_id = operator_id
        s.commit()
    pipeline.on_recording_completed(db, ctx, done, calendar=review.weekday_calendar)
    return call_id, rid, data


@pytest.fixture
def world(settings, db):
    ctx = storage.open_crypto(settings, db)
    users, tokens = {}, {}
    with db() as s:
        for name, role, unit, perms in USERS:
            u, _ = auth.create_user(s, name, role, PW, unit=unit, permissions=perms)
            users[name] = u.id
        s.commit()
        for name in users:
            tokens[name] = auth.issue_token(settings, s.get(type(u), users[name]))
        mgr1 = s.get(type(u), users["mgr1"])
        review.set_roster(s, None, mgr1)
        s.commit()
    store = CallStore(db)
    now = datetime.now(timezone.utc)
    w = World(settings, db, ctx, None, users, tokens)  # type: ignore[arg-type]
    w.call, w.rec, w.wav = seed_call(db, settings, ctx, store, at=now - timedelta(hours=1), operator_id=users["op1"])
    _, w.old_rec, _ = seed_call(db, settings, ctx, store, at=now - timedelta(hours=30), operator_id=users["op1"], seed=1)
    _, w.other_rec, _ = seed_call(db, settings, ctx, store, at=now - timedelta(minutes=30), operator_id=users["op2"],
                                  seed=2, caller="13900001111")
    # unit B: mgr2 on duty for this one
    with db() as s:
        review.set_roster(s, None, s.get(type(u), users["mgr2"]))
        s.commit()
    _, w.b_rec, _ = seed_call(db, settings, ctx, store, at=now - timedelta(minutes=20), operator_id=None, seed=3,
                              caller="13700002222")
    with db() as s:
        review.set_roster(s, None, s.get(type(u), users["mgr1"]))
        transcription.store_transcript(s, w.rec, None, transcript_doc(CALLER_SAYS))
        s.commit()
        res = cases.create_draft(s, text=CALLER_SAYS, recording_id=w.rec, call_id=w.call, settings=settings,
                                 source="transcript")
        w.draft = res.draft.id
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as c:
        w.client = c
        yield w
    crypto_types.set_field_cipher(None)
