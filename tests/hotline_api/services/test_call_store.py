from datetime import datetime, timedelta, timezone

from hotline_api.core.secrets import caller_hash
from hotline_api.models.calls import Call, DtmfEvent, Recording
from hotline_api.services.call_store import CallStore, QueuedSink, caller_number_from_uri
from telephony import events as ev

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)


def _events(call="c-1", rec="r-1"):
    return [
        ev.CallStarted(call, "sipcallid@x", '"Zhang" <sip:13800138000@127.0.0.1>', "", "12388", "w0", T0),
        ev.CallAnswered(call, T0 + timedelta(seconds=1), rec, "/spool/r-1.wav", 16000, 2),
        ev.DtmfReceived(call, "1", T0 + timedelta(seconds=5), 4.0, "rfc2833"),
        ev.DtmfReceived(call, "#", T0 + timedelta(seconds=6), 5.0, "sip_info"),
        ev.FlowChanged(call, "notice", T0 + timedelta(seconds=1)),
        ev.FlowChanged(call, "record", T0 + timedelta(seconds=8)),
        ev.CallEnded(call, T0 + timedelta(seconds=30), "ended", 200, "BYE", "caller"),
        ev.RecordingCompleted(rec, call, "/rec/r-1.wav", "complete", 29.0, 16000, 2, "ab" * 32, 1856044,
                              at=T0 + timedelta(seconds=30)),
    ]


def test_events_make_a_complete_row(db):
    store = CallStore(db, hash_caller=lambda n: caller_hash(n, b"salt"))
    seen = []
    store.add_completion_hook(lambda e: seen.append((e.recording_id, e.status)))
    for e in _events():
        store.apply(e)
    with db() as s:
        call = s.get(Call, "c-1")
        assert call.caller_number == "13800138000"
        assert call.caller_hash == caller_hash("13800138000", b"salt") != "13800138000"
        assert (call.status, call.hangup_cause, call.hung_up_by) == ("ended", 200, "caller")
        assert call.answered_at == T0 + timedelta(seconds=1) and call.ended_at == T0 + timedelta(seconds=30)
        assert call.flow_path == "notice>record"
        assert [(d.digit, d.offset_s, d.method) for d in call.dtmf] == [("1", 4.0, "rfc2833"), ("#", 5.0, "sip_info")]
        rec = s.get(Recording, "r-1")
        assert (rec.status, rec.duration, rec.channels, rec.sample_rate, rec.sha256) == ("complete", 29.0, 2, 16000, "ab" * 32)
        assert rec.call_id == "c-1"
    assert seen == [("r-1", "complete")]


def test_queued_sink_applies_in_order_and_survives_bad_events(db, caplog):
    store = CallStore(db)
    sink = QueuedSink(store)
    sink.publish(ev.DtmfReceived("nope", "1", T0, 0.0, "rfc2833"))  # unknown call: dropped, logged
    for e in _events("c-2", "r-2"):
        sink.publish(e)
    sink.close()
    with db() as s:
        assert s.get(Recording, "r-2").status == "complete"
        assert s.query(DtmfEvent).count() == 2
    assert "unknown call nope" in caplog.text
    assert "13800138000" not in caplog.text  # the caller number never reaches the logs


def test_caller_number_from_uri():
    assert caller_number_from_uri('"X" <sip:+8613800138000@10.0.0.1:5060;transport=udp>') == "+8613800138000"
    assert caller_number_from_uri("tel:12345") == "12345"
    assert caller_number_from_uri("garbage") == ""
