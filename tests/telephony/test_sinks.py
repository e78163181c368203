"""The JSON-lines event sink: caller identity never in the file, live transcript text only on request."""
from __future__ import annotations

from datetime import datetime, timezone

from telephony import events as ev
from telephony.sinks import JsonlSink, read_jsonl

AT = datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc)


def _write(path, **kw):
    sink = JsonlSink(path, **kw)
    sink.publish(ev.CallStarted("c1", "x@y", "sip:13900001111@127.0.0.1", "13900001111", "12388", "w0", AT))
    sink.publish(ev.LiveTranscript("c1", AT, True, "我要反映一个问题", 0.0, 2.0))
    sink.close()
    return path.read_text(encoding="utf-8"), read_jsonl(path)


def test_default_file_holds_neither_identity_nor_what_was_said(tmp_path):
    raw, (started, live) = _write(tmp_path / "e.jsonl")
    assert "13900001111" not in raw and "反映" not in raw
    assert started["caller_number"] == "<redacted>" and started["call_uuid"] == "c1"
    assert live["text"] == "<redacted>" and live["text_chars"] == 8 and live["final"] is True and live["end"] == 2.0


def test_content_on_request_identity_still_redacted(tmp_path):
    raw, (_started, live) = _write(tmp_path / "e.jsonl", include_content=True)
    assert live["text"] == "我要反映一个问题"
    assert "13900001111" not in raw
