"""The worker ↔ supervisor channel (telephony.ipc) over a real Unix socket: framing, every event type
round-trips, events arrive in order, routing calls are answered, a supervisor that goes away and
comes back gets the events that waited, and a malformed frame closes only its own connection."""
from __future__ import annotations

import dataclasses
import json
import socket
import struct
import threading
import time
from datetime import datetime, timezone

import pytest

from telephony import events as ev
from telephony import ipc
from telephony.routing import ClaimResult, OpenDecision, OperatorTarget

AT = datetime(2026, 3, 2, 1, 2, 3, 456000, tzinfo=timezone.utc)


class Collect:
    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def publish(self, e):
        with self.cond:
            self.events.append(e)
            self.cond.notify_all()

    def wait(self, n, timeout=10):
        with self.cond:
            return self.cond.wait_for(lambda: len(self.events) >= n, timeout)


class FakeRouter:
    def __init__(self):
        self.calls = []

    def claim(self, call_uuid, exclude):
        self.calls.append(("claim", call_uuid, exclude))
        if "op1" in exclude:
            return ClaimResult(None, 2, 0)
        return ClaimResult(OperatorTarget("op1", ("sip:op1@127.0.0.1:5071", "sip:op1@10.0.0.1"), "王"), 2, 1)

    def answered(self, operator_id, call_uuid):
        self.calls.append(("answered", operator_id, call_uuid))

    def release(self, operator_id, call_uuid, outcome):
        self.calls.append(("release", operator_id, call_uuid, outcome))


class FakeHours:
    def is_open(self, now):
        assert now.tzinfo is not None
        return OpenDecision(now.hour < 12, "open" if now.hour < 12 else "closed_hours", True)


def sample(cls):
    """An instance of an event dataclass with a value of each field's type."""
    vals = {}
    for f in dataclasses.fields(cls):
        t = str(f.type)
        if "datetime" in t:
            vals[f.name] = AT
        elif t.startswith("bool"):
            vals[f.name] = True
        elif t.startswith("int"):
            vals[f.name] = 7
        elif t.startswith("float"):
            vals[f.name] = 1.25
        elif t.startswith("dict"):
            vals[f.name] = {"recovered_by": "w1", "n": 2}
        else:
            vals[f.name] = f"{f.name}-值"
    return cls(**vals)


def test_every_event_type_round_trips_through_frames_cut_anywhere():
    assert len(ipc.EVENT_TYPES) >= 15
    frames = b"".join(ipc.encode_frame({"t": "ev", "e": ipc.event_to_wire(sample(cls))})
                      for cls in ipc.EVENT_TYPES.values())
    fr = ipc.FrameReader()
    out = []
    for i in range(0, len(frames), 7):  # a stream cuts frames at any byte
        out += fr.feed(frames[i:i + 7])
    got = [ipc.event_from_wire(m["e"]) for m in out]
    assert got == [sample(cls) for cls in ipc.EVENT_TYPES.values()]


@pytest.mark.parametrize("raw, why", [
    (struct.pack(">I", ipc.MAX_FRAME + 1), "over"),
    (struct.pack(">I", 3) + b"\xff\xfe{", "not JSON"),
    (struct.pack(">I", 2) + b"[]", "not a message"),
])
def test_malformed_frames_are_refused(raw, why):
    with pytest.raises(ipc.ProtocolError, match=why):
        ipc.FrameReader().feed(raw)


def test_unknown_or_bad_events_are_refused():
    with pytest.raises(ipc.ProtocolError, match="unknown event type"):
        ipc.event_from_wire({"type": "os.system"})
    with pytest.raises(ipc.ProtocolError, match="bad CallEnded"):
        ipc.event_from_wire({"type": "CallEnded", "call_uuid": "x"})


@pytest.fixture
def sock_path(tmp_path):
    return tmp_path / "w.sock"


def test_events_in_order_and_routing_answered(sock_path):
    sink, router = Collect(), FakeRouter()
    srv = ipc.IpcServer(sock_path, sink, ipc.RoutingHandler(router, FakeHours()))
    assert sock_path.stat().st_mode & 0o777 == 0o600
    cl = ipc.IpcClient(sock_path)
    try:
        for i in range(500):
            cl.publish(ev.FlowChanged(f"c{i}", "notice", AT))
        r = ipc.IpcRouter(cl)
        c = r.claim("c1", frozenset({"op9"}))
        assert c == ClaimResult(OperatorTarget("op1", ("sip:op1@127.0.0.1:5071", "sip:op1@10.0.0.1"), "王"), 2, 1)
        assert r.claim("c1", frozenset({"op1"})) == ClaimResult(None, 2, 0)
        r.answered("op1", "c1")
        r.release("op1", "c1", "ended")
        h = ipc.IpcOpenHours(cl)
        assert h.is_open(AT) == OpenDecision(True, "open", True)
        assert h.is_open(AT.replace(hour=20)) == OpenDecision(False, "closed_hours", True)
        assert sink.wait(500)
        assert [e.call_uuid for e in sink.events] == [f"c{i}" for i in range(500)]
        assert router.calls == [("claim", "c1", frozenset({"op9"})), ("claim", "c1", frozenset({"op1"})),
                                ("answered", "op1", "c1"), ("release", "op1", "c1", "ended")]
    finally:
        cl.close()
        srv.close()


def test_a_router_error_reaches_the_caller_as_an_error(sock_path):
    class Broken(FakeRouter):
        def claim(self, call_uuid, exclude):
            raise RuntimeError("database is locked")

    srv = ipc.IpcServer(sock_path, Collect(), ipc.RoutingHandler(Broken(), FakeHours()))
    cl = ipc.IpcClient(sock_path)
    try:
        with pytest.raises(RuntimeError, match="database is locked"):
            ipc.IpcRouter(cl).claim("c", frozenset())
    finally:
        cl.close()
        srv.close()


def test_events_wait_while_the_supervisor_is_away_and_arrive_when_it_is_back(sock_path):
    cl = ipc.IpcClient(sock_path, call_timeout_s=1)
    try:
        for i in range(20):
            cl.publish(ev.FlowChanged(f"early{i}", "record", AT))
        with pytest.raises(ConnectionError):
            ipc.IpcOpenHours(cl).is_open(AT)  # no supervisor: a clear error, quickly
        sink = Collect()
        srv = ipc.IpcServer(sock_path, sink, ipc.RoutingHandler(FakeRouter(), FakeHours()))
        assert sink.wait(20)
        srv.close()  # the supervisor restarts
        time.sleep(0.3)
        for i in range(5):
            cl.publish(ev.FlowChanged(f"late{i}", "record", AT))
        sink2 = Collect()
        srv2 = ipc.IpcServer(sock_path, sink2, ipc.RoutingHandler(FakeRouter(), FakeHours()))
        assert sink2.wait(5), sink2.events
        assert [e.call_uuid for e in sink.events] == [f"early{i}" for i in range(20)]
        assert [e.call_uuid for e in sink2.events][-5:] == [f"late{i}" for i in range(5)]
        srv2.close()
    finally:
        cl.close(timeout=2)


def test_a_malformed_frame_closes_only_that_connection(sock_path):
    sink = Collect()
    srv = ipc.IpcServer(sock_path, sink, ipc.RoutingHandler(FakeRouter(), FakeHours()))
    good = ipc.IpcClient(sock_path)
    try:
        bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bad.connect(str(sock_path))
        bad.sendall(struct.pack(">I", 5) + b"nope!")
        bad.settimeout(5)
        assert bad.recv(10) == b""  # closed by the server
        bad.close()
        evil = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        evil.connect(str(sock_path))
        evil.sendall(ipc.encode_frame({"t": "ev", "e": {"type": "Path", "args": ["/"]}}))
        evil.settimeout(5)
        assert evil.recv(10) == b""
        evil.close()
        good.publish(ev.FlowChanged("after", "notice", AT))
        assert sink.wait(1)
        assert [e.call_uuid for e in sink.events] == ["after"]
        assert json.loads(json.dumps(ipc.event_to_wire(sink.events[0]), default=str))["type"] == "FlowChanged"
    finally:
        good.close()
        srv.close()
