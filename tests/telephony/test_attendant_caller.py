"""A scripted pjsua2 caller for the attendant/queue tests (run as a process; no tests here):

    python tests/telephony/test_attendant_caller.py sip:12388@127.0.0.1:PORT \
        --at 5.0 dtmf 2 --at 10.0 dtmf 1 --at 13.0 play speech.wav --at 40 hangup --timeout 60

Each ``--at T ACTION ARG`` runs T seconds after the call's media is up: ``dtmf DIGITS`` (RFC 2833,
``--gap`` seconds apart), ``play FILE`` (once), ``loop FILE`` (repeat until the call ends),
``stop -`` (stop playing), ``hangup -``. The call also ends when the far end hangs up or
``--timeout`` passes. Prints one JSON line: ``{"answered", "code", "sent": [[digit, t]], "ended_by",
"duration"}``. Same thread discipline as the agent (threadCnt=0, main thread polls).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

if __name__ != "__main__":
    __test__ = False
else:
    import pjsua2 as pj

    class Call(pj.Call):
        def __init__(self, acc):
            super().__init__(acc)
            self.confirmed = self.gone = False
            self.audio = None
            self.code = 0

        def onCallState(self, prm):
            ci = self.getInfo()
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
                self.confirmed = True
            elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.gone = True
                self.code = ci.lastStatusCode

        def onCallMediaState(self, prm):
            ci = self.getInfo()  # keep the CallInfo alive while reading its media vector
            for mi in ci.media:
                if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    self.audio = self.getAudioMedia(mi.index)

    def main() -> int:
        ap = argparse.ArgumentParser()
        ap.add_argument("uri")
        ap.add_argument("--at", nargs=3, action="append", default=[], metavar=("T", "ACTION", "ARG"))
        ap.add_argument("--gap", type=float, default=0.25)
        ap.add_argument("--timeout", type=float, default=60.0)
        args = ap.parse_args()
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
        tc.boundAddress = "127.0.0.1"
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        ep.libStart()
        ep.audDevManager().setNullDev()
        ac = pj.AccountConfig()
        ac.idUri = "sip:13900000000@127.0.0.1"
        ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        acc = pj.Account()
        acc.create(ac)
        call = Call(acc)
        call.makeCall(args.uri, pj.CallOpParam(True))
        out = {"answered": False, "sent": [], "code": 0, "ended_by": "", "duration": 0.0}
        start = time.monotonic()
        while time.monotonic() - start < args.timeout and not call.gone and not (call.confirmed and call.audio):
            ep.libHandleEvents(10)
        player = None
        if call.confirmed and call.audio is not None:
            out["answered"] = True
            t0 = time.monotonic()
            script = sorted(((float(t), a, v) for t, a, v in args.at), key=lambda x: x[0])
            digits: list[str] = []
            next_digit = 0.0
            while not call.gone and time.monotonic() - start < args.timeout:
                ep.libHandleEvents(10)
                now = time.monotonic() - t0
                while script and script[0][0] <= now:
                    _, action, arg = script.pop(0)
                    if action == "dtmf":
                        digits.extend(arg)
                    elif action in ("play", "loop"):
                        player = pj.AudioMediaPlayer()
                        player.createPlayer(arg, 0 if action == "loop" else pj.PJMEDIA_FILE_NO_LOOP)
                        player.startTransmit(call.audio)
                    elif action == "stop":
                        player = None
                    elif action == "hangup":
                        out["ended_by"] = "caller"
                        call.hangup(pj.CallOpParam())
                if digits and now >= next_digit and not call.gone:
                    d = digits.pop(0)
                    try:
                        call.dialDtmf(d)
                        out["sent"].append([d, round(now, 3)])
                    except pj.Error as e:
                        out.setdefault("errors", []).append(e.info()[:200])
                    next_digit = now + args.gap
            out["duration"] = round(time.monotonic() - t0, 3)
            if not call.gone:
                out["ended_by"] = out["ended_by"] or "timeout"
                call.hangup(pj.CallOpParam())
                end = time.monotonic() + 2
                while not call.gone and time.monotonic() < end:
                    ep.libHandleEvents(10)
            elif not out["ended_by"]:
                out["ended_by"] = "hotline"
        out["code"] = call.code
        print(json.dumps(out), flush=True)
        player = None
        del call
        acc.shutdown()
        del acc
        ep.libDestroy()
        return 0 if out["answered"] else 1

    sys.exit(main())
