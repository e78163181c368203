"""Crash recovery of a worker's spool directory.

A worker keeps, in its own spool directory, one marker per call in progress
(``<call_uuid>.call``: call_uuid, worker_id, started_at; never the caller) and one sidecar per
recording in progress (``<recording_id>.json``, see telephony.recorder). When the worker dies,
they stay. :func:`recover_spool` (run by the worker at start, or by a supervisor for a dead
worker's spool) repairs and completes every unfinished recording with status ``recovered`` and
emits ``RecordingCompleted``; every unfinished call gets ``CallEnded(status="recovered")``.
Nothing is deleted that is not already safely in the recordings directory.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from telephony.events import CallEnded, EventSink, RecordingCompleted
from telephony.recorder import read_sidecar, recover_file, unfinished

log = logging.getLogger(__name__)

CALL_SUFFIX = ".call"


def write_call_marker(spool_dir: Path, call_uuid: str, worker_id: str, started_at: datetime) -> Path:
    p = Path(spool_dir) / f"{call_uuid}{CALL_SUFFIX}"
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps({"call_uuid": call_uuid, "worker_id": worker_id,
                               "started_at": started_at.isoformat()}), encoding="utf-8")
    os.replace(tmp, p)
    return p


def remove_call_marker(spool_dir: Path, call_uuid: str) -> None:
    (Path(spool_dir) / f"{call_uuid}{CALL_SUFFIX}").unlink(missing_ok=True)


def _mtime(p: Path) -> datetime:
    try:
        return datetime.fromtimestamp(p.stat().st_mtime, timezone.utc)
    except OSError:
        return datetime.now(timezone.utc)


def recover_spool(spool_dir: Path, recordings_dir: Path, sink: EventSink,
                  worker_id: str = "") -> list[RecordingCompleted]:
    """Complete everything a dead worker left in ``spool_dir``. Returns the recordings recovered."""
    spool_dir = Path(spool_dir)
    if not spool_dir.is_dir():
        return []
    done: list[RecordingCompleted] = []
    calls: dict[str, datetime] = {}
    for sidecar in unfinished(spool_dir):
        meta = read_sidecar(sidecar) or {}
        wav = sidecar.with_name(f"{meta.get('recording_id') or sidecar.stem}.wav")
        ended_at = _mtime(wav if wav.exists() else sidecar)
        try:
            res = recover_file(sidecar, recordings_dir)
        except Exception as e:
            log.error("recovery of %s failed: %s", sidecar.name, e)
            continue
        ev = RecordingCompleted(
            recording_id=res.recording_id, call_uuid=res.call_uuid, path=res.path,
            status="recovered" if res.frames > 0 else "empty", duration=res.duration,
            sample_rate=res.sample_rate, channels=res.channels, sha256=res.sha256,
            size_bytes=res.size_bytes, kind=meta.get("kind", "call"), at=ended_at,
            extra={"recovered_by": worker_id},
        )
        _publish(sink, ev)
        done.append(ev)
        log.info("recovered recording %s (%.1f s)", res.recording_id, res.duration)
        if res.call_uuid:
            calls[res.call_uuid] = max(calls.get(res.call_uuid, ended_at), ended_at)
    for marker in sorted(spool_dir.glob(f"*{CALL_SUFFIX}")):
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        cu = data.get("call_uuid") or marker.stem
        calls.setdefault(cu, _mtime(marker))
    for cu, at in calls.items():
        _publish(sink, CallEnded(call_uuid=cu, at=at, status="recovered", hangup_cause=0,
                                 hangup_reason="worker stopped unexpectedly", hung_up_by="system"))
        remove_call_marker(spool_dir, cu)
    return done


def recover_orphan_spools(spool_root: Path, active_ids: set[str], recordings_dir: Path, sink: EventSink,
                          idle_s: float = 120.0) -> list[RecordingCompleted]:
    """Recover the spools of workers that no longer exist (the pool was made smaller, a worker id
    was renamed): their unfinished recordings would otherwise wait for a worker that never starts.
    A spool whose files changed in the last ``idle_s`` seconds is left alone (it may belong to a
    live worker of another host sharing the folder)."""
    import time

    root = Path(spool_root)
    if not root.is_dir():
        return []
    done: list[RecordingCompleted] = []
    now = time.time()
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in active_ids):
        files = [f for f in d.iterdir() if f.is_file()]
        if not files:
            continue
        if any(now - f.stat().st_mtime < idle_s for f in files):
            log.warning("spool %s has no worker here but changed recently; left alone", d.name)
            continue
        log.warning("recovering the spool of worker %s, which is no longer in the pool", d.name)
        done += recover_spool(d, recordings_dir, sink, worker_id=d.name)
    return done


def _publish(sink: EventSink, ev) -> None:
    try:
        sink.publish(ev)
    except Exception:
        log.exception("event sink failed on %s", type(ev).__name__)
