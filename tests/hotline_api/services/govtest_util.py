"""Helpers for the governance service tests (not a conftest: shared dir with other suites)."""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

import hotline_api.models.governance  # noqa: F401 - registers the tables' ORM classes
from hotline_api.models.calls import Call, Recording


def wav_bytes(seconds: float = 1.0, rate: int = 8000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 500 * t)
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.stack([left, right], axis=1), -1, 1), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


@dataclass
class Completed:
    """Shaped like telephony.events.RecordingCompleted."""

    recording_id: str
    call_uuid: str
    path: str
    status: str = "complete"
    kind: str = "call"
    sha256: str = ""
    at: datetime | None = None


def make_call(session, settings, *, at: datetime | None = None, kind: str = "call", seconds: float = 1.0,
              seed: int = 0, caller: str = "13812340918") -> tuple[Completed, bytes]:
    """A call row + recording row + a completed plain WAV in the spool, as the agent leaves them."""
    at = at or datetime.now(timezone.utc)
    call = Call(sip_call_id=f"{uuid.uuid4()}@test", caller_uri=f"sip:{caller}@127.0.0.1", caller_number=caller,
                dialled="12388", channel=kind, status="ended", created_at=at, answered_at=at, ended_at=at)
    session.add(call)
    session.flush()
    rid = str(uuid.uuid4())
    data = wav_bytes(seconds, seed=seed)
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    path = Path(settings.spool_dir) / f"{rid}.wav"
    path.write_bytes(data)
    session.add(Recording(id=rid, call_id=call.id, kind=kind, path=str(path), status="complete", duration=seconds,
                          sample_rate=8000, channels=2, created_at=at, completed_at=at))
    session.commit()
    return Completed(rid, call.id, str(path), kind=kind, at=at), data


def files_snapshot(*dirs: Path) -> dict[str, bytes]:
    out = {}
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file():
                out[str(p)] = p.read_bytes()
    return out
