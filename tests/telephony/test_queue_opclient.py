"""An operator softphone for the queue tests (pjsua2, run as a separate process; no tests here):

    python tests/telephony/test_queue_opclient.py --port 5071 --mode answer --answer-after 0.5 \
        --play speech.wav --record heard.wav
    python tests/telephony/test_queue_opclient.py --port 0 --register sip:op1@127.0.0.1:5060 \
        --user op1 --password secret --mode answer

Listens on 127.0.0.1 (``--port 0``: any free port), optionally REGISTERs with digest credentials
to a registrar, and handles incoming calls by ``--mode``: ``answer`` (after ``--answer-after``
seconds of ringing), ``noanswer`` (rings forever), ``busy`` (486). Once answered it plays
``--play`` (a WAV, looped) and records what it hears to ``--record``; ``--hangup-after`` ends the
call from the operator side. One JSON object per line on stdout:
``{"event": "ready", "port": P}``, ``{"event": "registered", "code": 200}``, ``{"event": "incoming"}``,
``{"event": "answered"}``, ``{"event": "media"}``, ``{"event": "disconnected", "code": N}``.
SIGTERM ends it. Same thread discipline as the agent (threadCnt=0, main thread polls).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time

if __name__ != "__main__":  # imported by pytest's collection: nothing to collect
    __test__ = False
else:
    import pjsua2 as pj

    def emit(**kw):
        print(json.dumps(kw), flush=True)

    class Acc(pj.Account):
        def __init__(self, app):
            super().__init__()
            self.app = app

        def onRegState(self, prm):
            emit(event="registered", code=int(prm.code), expiration=int(prm.expiration))

        def onIncomingCall(self, prm):
            self.app.incoming(self, prm)

    class Call(pj.Call):
        def __init__(self, app, acc, cid):
            super().__init__(acc, cid)
            self.app = app
            self.gone = False
            self.media_up = False

        def onCallState(self, prm):
            ci = self.getInfo()
            if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.gone = True
                emit(event="disconnected", code=int(ci.lastStatusCode))
            elif ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
                emit(event="answered")

        def onCallMediaState(self, prm):
            ci = self.getInfo()
            for mi in ci.media:
                if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    am = self.getAudioMedia(mi.index)
                    self.app.connect(self, am)
                    if not self.media_up:
                        self.media_up = True
                        emit(event="media")

    class App:
        def __init__(self, args):
            self.args = args
            self.calls = []  # [call, answer_at, answered_at]
            self.player = None
            self.recorder = None
            self.n = 0

        def incoming(self, acc, prm):
            call = Call(self, acc, prm.callId)
            emit(event="incoming")
            op = pj.CallOpParam()
            if self.args.mode == "busy":
                op.statusCode = 486
                call.hangup(op)
                self.calls.append([call, None, None])
                return
            op.statusCode = 180
            call.answer(op)
            at = time.monotonic() + self.args.answer_after if self.args.mode == "answer" else None
            self.calls.append([call, at, None])

        def connect(self, call, am):
            if self.args.play:
                if self.player is None:
                    self.player = pj.AudioMediaPlayer()
                    self.player.createPlayer(self.args.play, 0)  # loop
                self.player.startTransmit(am)
            if self.args.record:
                if self.recorder is None:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(self.args.record)
                am.startTransmit(self.recorder)

        def tick(self):
            now = time.monotonic()
            for item in self.calls:
                call, at, answered = item
                if call.gone:
                    continue
                if at is not None and answered is None and now >= at:
                    op = pj.CallOpParam()
                    op.statusCode = 200
                    call.answer(op)
                    item[2] = now
                elif (answered is not None and self.args.hangup_after > 0
                      and now - answered >= self.args.hangup_after):
                    call.hangup(pj.CallOpParam())
                    item[2] = float("inf")

    def main() -> int:
        ap = argparse.ArgumentParser()
        ap.add_argument("--port", type=int, default=0)
        ap.add_argument("--mode", choices=["answer", "noanswer", "busy"], default="answer")
        ap.add_argument("--answer-after", type=float, default=0.5)
        ap.add_argument("--hangup-after", type=float, default=0.0)
        ap.add_argument("--play", default="")
        ap.add_argument("--record", default="")
        ap.add_argument("--register", default="", help="AOR to register, e.g. sip:op1@127.0.0.1:5060")
        ap.add_argument("--user", default="")
        ap.add_argument("--password", default="")
        ap.add_argument("--realm", default="*")
        args = ap.parse_args()
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        signal.signal(signal.SIGINT, lambda *a: stop.append(1))
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.logConfig.level = 1
        cfg.logConfig.consoleLevel = 1
        cfg.medConfig.noVad = True
        ep.libInit(cfg)
        tc = pj.TransportConfig()
        tc.port = args.port
        tc.boundAddress = "127.0.0.1"
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        port = ep.transportGetInfo(tid).localName.split(":")[-1]
        ep.libStart()
        ep.audDevManager().setNullDev()
        app = App(args)
        ac = pj.AccountConfig()
        ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        if args.register:
            ac.idUri = args.register
            host = args.register.split("@", 1)[1]
            ac.regConfig.registrarUri = f"sip:{host}"
            ac.regConfig.timeoutSec = 300
            ac.regConfig.retryIntervalSec = 2
            cred = pj.AuthCredInfo("digest", args.realm, args.user, 0, args.password)
            ac.sipConfig.authCreds.append(cred)
        else:
            ac.idUri = f"sip:operator@127.0.0.1:{port}"
        acc = Acc(app)
        acc.create(ac, True)
        emit(event="ready", port=int(port))
        while not stop:
            ep.libHandleEvents(10)
            app.tick()
        for item in app.calls:
            if not item[0].gone:
                try:
                    item[0].hangup(pj.CallOpParam())
                except pj.Error:
                    pass
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            ep.libHandleEvents(10)
        app.player = None
        app.recorder = None
        app.calls = []
        if args.register:
            try:
                acc.setRegistration(False)
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    ep.libHandleEvents(10)
            except pj.Error:
                pass
        acc.shutdown()
        del acc
        ep.libDestroy()
        return 0

    sys.exit(main())
