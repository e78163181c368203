"""Event sinks that belong to telephony: a JSON-lines file (the standalone worker, tests) and a
queued wrapper that keeps a slow sink off the agent's thread."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import threading
from datetime import datetime
from pathlib import Path

from telephony.events import AgentEvent, EventSink

log = logging.getLogger(__name__)

#: Fields never written to a file: the caller's identity belongs in the database only.
CONFIDENTIAL_FIELDS = ("caller_uri", "caller_number")
#: What was said (live transcript text) is report content: also kept out of files unless asked for.
CONTENT_FIELDS = ("text",)


def event_to_dict(event: AgentEvent, redact: bool = True, include_content: bool = True) -> dict:
    d = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        v = getattr(event, f.name)
        if isinstance(v, datetime):
            v = v.isoformat()
        if redact and f.name in CONFIDENTIAL_FIELDS:
            v = "<redacted>" if v else v
        if not include_content and f.name in CONTENT_FIELDS and isinstance(v, str):
            d[f.name + "_chars"] = len(v)
            v = "<redacted>" if v else v
        d[f.name] = v
    return d


class JsonlSink:
    """Appends one JSON object per event to a file (flushed per line). Caller identity is always
    redacted; report content (live transcript text) too unless ``include_content`` (tests, debugging
    on a development machine: a file is a copy nobody governs)."""

    def __init__(self, path: str | Path, include_content: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.include_content = include_content
        self._f = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def publish(self, event: AgentEvent) -> None:
        line = json.dumps(event_to_dict(event, include_content=self.include_content), ensure_ascii=False)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            self._f.close()


def read_jsonl(path: str | Path) -> list[dict]:
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a torn last line after SIGKILL
    return out


class QueuedSink:
    """Wraps a sink whose ``publish`` may be slow (database): the agent's call only enqueues;
    a daemon thread delivers in order. ``close()`` delivers what is queued, then stops."""

    def __init__(self, inner: EventSink, maxsize: int = 10000) -> None:
        self.inner = inner
        self._q: "queue.Queue[AgentEvent | None]" = queue.Queue(maxsize)
        self._t = threading.Thread(target=self._run, name="event-sink", daemon=True)
        self._t.start()

    def publish(self, event: AgentEvent) -> None:
        try:
            self._q.put_nowait(event)
        except queue.Full:
            log.error("event queue full; dropping %s", type(event).__name__)

    def _run(self) -> None:
        while True:
            ev = self._q.get()
            if ev is None:
                return
            try:
                self.inner.publish(ev)
            except Exception:
                log.exception("event sink failed on %s", type(ev).__name__)

    def close(self, timeout: float = 10.0) -> None:
        self._q.put(None)
        self._t.join(timeout)
