"""Worker ↔ supervisor channel: a SIP worker reports its events and asks its routing questions over
one Unix stream socket to the process that supervises it, which alone writes the database. The
worker then needs no database stack at all (about the bare worker's memory), and the service has
one writer of call events per SIP host instead of one per worker.

Protocol (the core, no sockets: :func:`encode_frame`, :class:`FrameReader`, :func:`event_to_wire`,
:func:`event_from_wire`): frames of a 4-byte big-endian length and a UTF-8 JSON object, at most
:data:`MAX_FRAME` bytes.

* ``{"t": "ev", "e": {"type": "CallStarted", ...}}``: an agent event (``telephony.events``), one way;
  datetimes as ``{"$dt": ISO}``. Nothing is redacted: the socket is owner-only (0600) in the
  service's run dir, and the caller's identity is needed in the database.
* ``{"t": "call", "id": N, "m": METHOD, "a": [...]}`` → ``{"t": "ret", "id": N, "v": ...}`` or
  ``{"t": "err", "id": N, "x": "message"}``: the routing questions (``claim``, ``answered``,
  ``release``, ``is_open``: :class:`telephony.routing.Router` and ``OpenHours``).

A malformed frame (bad length, not JSON, unknown event type) closes that connection with a logged
reason; the worker reconnects, the server keeps serving the others.

Worker side: :class:`IpcClient` (``publish`` never blocks: events wait in memory while the
supervisor is unreachable, and are sent in order once it is back), :class:`IpcRouter`,
:class:`IpcOpenHours`. Supervisor side: :class:`IpcServer` (events to a sink, calls to a handler
on a thread pool). The composition root (``hotline_api.sip_pool``) wires both.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import queue
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from telephony import events as ev
from telephony.routing import ClaimResult, OpenDecision, OperatorTarget

log = logging.getLogger(__name__)

MAX_FRAME = 1 << 20
_LEN = struct.Struct(">I")


class ProtocolError(ValueError):
    """A frame that is not part of this protocol; the connection is closed."""


# ==================================================================================== protocol
def encode_frame(obj: dict) -> bytes:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_default).encode("utf-8")
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(data)} bytes is over {MAX_FRAME}")
    return _LEN.pack(len(data)) + data


def _default(v: Any):
    if isinstance(v, datetime):
        return {"$dt": v.isoformat()}
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    raise TypeError(f"cannot send {type(v).__name__}")


def _hook(d: dict):
    if len(d) == 1 and "$dt" in d:
        return datetime.fromisoformat(d["$dt"])
    return d


class FrameReader:
    """Feed bytes, get whole decoded frames (a stream may cut a frame anywhere)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_FRAME:
                raise ProtocolError(f"frame length {n} is over {MAX_FRAME}")
            if len(self._buf) < 4 + n:
                break
            raw = bytes(self._buf[4:4 + n])
            del self._buf[:4 + n]
            try:
                obj = json.loads(raw.decode("utf-8"), object_hook=_hook)
            except (UnicodeDecodeError, ValueError) as e:
                raise ProtocolError(f"frame is not JSON: {e}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
                raise ProtocolError("frame is not a message object")
            out.append(obj)
        return out


#: the event classes that may cross the socket
EVENT_TYPES = {name: cls for name, cls in vars(ev).items()
               if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == ev.__name__}


def event_to_wire(event) -> dict:
    d = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    d["type"] = type(event).__name__
    return d


def event_from_wire(d: dict):
    cls = EVENT_TYPES.get(str(d.get("type")))
    if cls is None:
        raise ProtocolError(f"unknown event type {d.get('type')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError as e:
        raise ProtocolError(f"bad {cls.__name__}: {e}") from None


def claim_to_wire(c: ClaimResult) -> dict:
    t = c.target
    return {"target": None if t is None else {"operator_id": t.operator_id, "uris": list(t.uris), "name": t.name},
            "logged_in": c.logged_in, "available": c.available}


def claim_from_wire(d: dict) -> ClaimResult:
    t = d.get("target")
    target = None if t is None else OperatorTarget(t["operator_id"], tuple(t.get("uris") or ()), t.get("name", ""))
    return ClaimResult(target, int(d.get("logged_in", 0)), int(d.get("available", 0)))


# ==================================================================================== worker side
class IpcClient:
    """The worker's end: ``publish(event)`` (an ``EventSink``; never blocks) and ``call(method,
    *args)`` (blocks its caller, a routing helper thread, for at most ``call_timeout_s``)."""

    def __init__(self, path: str | Path, call_timeout_s: float = 30.0, max_queued: int = 200_000,
                 name: str = "ipc") -> None:
        self.path = str(path)
        self.call_timeout_s = call_timeout_s
        self._q: "queue.Queue[bytes | None]" = queue.Queue(max_queued)
        self._ids = itertools.count(1)
        self._pending: dict[int, list] = {}  # id -> [event, result, error]
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._connected = threading.Event()
        self._closing = False
        self._sent_all = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name=f"{name}-send", daemon=True)
        self._sender.start()

    # ------------------------------------------------------------------ API
    def publish(self, event) -> None:
        try:
            self._q.put_nowait(encode_frame({"t": "ev", "e": event_to_wire(event)}))
        except queue.Full:
            log.error("supervisor unreachable and %d events waiting: dropping %s (its recording stays on disk)",
                      self._q.maxsize, type(event).__name__)
        except (ProtocolError, TypeError) as e:
            log.error("cannot send %s: %s", type(event).__name__, e)

    def call(self, method: str, *args):
        cid = next(self._ids)
        slot = [threading.Event(), None, None]
        with self._lock:
            self._pending[cid] = slot
        try:
            if not self._connected.wait(self.call_timeout_s):
                raise ConnectionError("supervisor not reachable")
            self._q.put(encode_frame({"t": "call", "id": cid, "m": method, "a": list(args)}), timeout=5)
            if not slot[0].wait(self.call_timeout_s):
                raise TimeoutError(f"{method}: no answer from the supervisor in {self.call_timeout_s:.0f} s")
            if slot[2] is not None:
                raise RuntimeError(f"{method}: {slot[2]}")
            return slot[1]
        finally:
            with self._lock:
                self._pending.pop(cid, None)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (up to ``timeout``), then disconnect."""
        self._closing = True
        self._q.put(None)
        self._sender.join(timeout)
        sock = self._sock
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ threads
    def _connect(self) -> socket.socket:
        delay = 0.1
        said = False
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                if said:
                    log.info("reconnected to the supervisor")
                return s
            except OSError as e:
                s.close()
                if self._closing:
                    raise ConnectionError("closing") from None
                if not said:
                    log.warning("supervisor socket %s not reachable (%s); events wait", self.path, e)
                    said = True
                threading.Event().wait(delay)
                delay = min(2.0, delay * 2)

    def _send_loop(self) -> None:
        frame: bytes | None = None
        while True:
            try:
                sock = self._connect()
            except ConnectionError:
                return
            self._sock = sock
            reader = threading.Thread(target=self._read_loop, args=(sock,), name="ipc-read", daemon=True)
            reader.start()
            self._connected.set()
            try:
                while True:
                    if frame is None:
                        frame = self._q.get()
                        if frame is None:
                            return
                    sock.sendall(frame)
                    frame = None  # sent: the next one (a frame cut by a broken socket is sent again)
            except OSError as e:
                self._connected.clear()
                log.warning("connection to the supervisor lost (%s); reconnecting", e)
                self._fail_pending("connection to the supervisor lost")
                try:
                    sock.close()
                except OSError:
                    pass

    def _read_loop(self, sock: socket.socket) -> None:
        fr = FrameReader()
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for msg in fr.feed(data):
                    with self._lock:
                        slot = self._pending.get(msg.get("id"))
                    if slot is None:
                        continue
                    if msg["t"] == "ret":
                        slot[1] = msg.get("v")
                    else:
                        slot[2] = str(msg.get("x", "error"))
                    slot[0].set()
        except (OSError, ProtocolError) as e:
            log.warning("supervisor channel: %s", e)
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the sender notices and reconnects
            except OSError:
                pass

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            for slot in self._pending.values():
                slot[2] = why
                slot[0].set()


class IpcRouter:
    """:class:`telephony.routing.Router` answered by the supervisor."""

    def __init__(self, client: IpcClient) -> None:
        self.client = client

    def claim(self, call_uuid: str, exclude: frozenset[str]) -> ClaimResult:
        return claim_from_wire(self.client.call("claim", call_uuid, sorted(exclude)))

    def answered(self, operator_id: str, call_uuid: str) -> None:
        self.client.call("answered", operator_id, call_uuid)

    def release(self, operator_id: str, call_uuid: str, outcome: str) -> None:
        self.client.call("release", operator_id, call_uuid, outcome)


class IpcOpenHours:
    """:class:`telephony.routing.OpenHours` answered by the supervisor."""

    def __init__(self, client: IpcClient) -> None:
        self.client = client

    def is_open(self, now: datetime) -> OpenDecision:
        d = self.client.call("is_open", now)
        return OpenDecision(bool(d["open"]), str(d.get("reason", "")), bool(d.get("provisional", False)))


# ==================================================================================== supervisor side
class RoutingHandler:
    """Answers the worker's calls with a real Router and OpenHours (the database ones)."""

    def __init__(self, router, hours) -> None:
        self.router, self.hours = router, hours

    def __call__(self, method: str, args: list):
        if method == "claim":
            return claim_to_wire(self.router.claim(str(args[0]), frozenset(args[1] or ())))
        if method == "answered":
            return self.router.answered(str(args[0]), str(args[1]))
        if method == "release":
            return self.router.release(str(args[0]), str(args[1]), str(args[2]))
        if method == "is_open":
            now = args[0] if isinstance(args[0], datetime) else datetime.fromisoformat(str(args[0]))
            d = self.hours.is_open(now)
            return {"open": d.open, "reason": d.reason, "provisional": d.provisional}
        raise ProtocolError(f"unknown method {method!r}")


class IpcServer:
    """Listens on ``path`` (0600); events go to ``sink.publish`` in each connection's order, calls to
    ``handler(method, args)`` on a thread pool (they may block on the database)."""

    def __init__(self, path: str | Path, sink, handler: Callable[[str, list], Any], threads: int = 8) -> None:
        self.path = Path(path)
        self.sink = sink
        self.handler = handler
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ipc-call")
        self._stop = threading.Event()
        if len(os.fsencode(self.path)) > 100:  # sun_path holds 108 bytes
            raise OSError(f"socket path too long for a Unix socket ({len(os.fsencode(self.path))} bytes, at most "
                          f"100): {self.path}; use a shorter data dir")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._srv.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._srv.listen(256)
        self.events_received = 0
        self._conns: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name="ipc-accept", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="ipc-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        fr = FrameReader()
        wlock = threading.Lock()
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                for msg in fr.feed(data):
                    if msg["t"] == "ev":
                        self.events_received += 1
                        self.sink.publish(event_from_wire(msg.get("e") or {}))
                    elif msg["t"] == "call":
                        self._pool.submit(self._answer, conn, wlock, msg)
                    else:
                        raise ProtocolError(f"unknown message type {msg['t']!r}")
        except ProtocolError as e:
            log.error("worker channel closed: %s", e)
        except OSError:
            pass
        finally:
            self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _answer(self, conn: socket.socket, wlock: threading.Lock, msg: dict) -> None:
        cid = msg.get("id")
        try:
            reply = {"t": "ret", "id": cid, "v": self.handler(str(msg.get("m")), list(msg.get("a") or []))}
        except Exception as e:  # noqa: BLE001 - the worker falls back (no operator, closed hours)
            log.warning("routing call %s failed: %s", msg.get("m"), e)
            reply = {"t": "err", "id": cid, "x": f"{type(e).__name__}: {e}"[:300]}
        try:
            frame = encode_frame(reply)
            with wlock:
                conn.sendall(frame)
        except (OSError, ProtocolError, TypeError):
            pass

    def close(self) -> None:
        self._stop.set()
        try:
            self._srv.close()
        except OSError:
            pass
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.path.unlink(missing_ok=True)
