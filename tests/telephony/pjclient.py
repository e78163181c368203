"""A pjsua2 test caller, run as a separate process by the tests:

    python tests/telephony/pjclient.py sip:12388@127.0.0.1:PORT --dtmf "123#" --hold 4

Calls, waits for the answer and active media, sends the digits as RFC 2833 telephone-events
(one ``dialDtmf`` per digit, ``--gap`` seconds apart), stays ``--hold`` seconds, hangs up, and
prints one JSON line: {"answered": bool, "sent": [[digit, seconds_since_answer], ...], "code": int}.
Same threading discipline as the agent: threadCnt=0, the main thread polls libHandleEvents.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import pjsua2 as pj


class _Call(pj.Call):
    def __init__(self, acc):
        super().__init__(acc)
        self.confirmed = False
        self.media = False
        self.disconnected = False
        self.code = 0

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            self.code = ci.lastStatusCode

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media = True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--dtmf", default="")
    ap.add_argument("--gap", type=float, default=0.5)
    ap.add_argument("--before", type=float, default=1.0, help="seconds after answer before the first digit")
    ap.add_argument("--hold", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.port = 0
    tc.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    ep.audDevManager().setNullDev()
    ac = pj.AccountConfig()
    ac.idUri = "sip:tester@127.0.0.1"
    ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acc = pj.Account()
    acc.create(ac)
    call = _Call(acc)
    op = pj.CallOpParam(True)
    call.makeCall(args.uri, op)
    result = {"answered": False, "sent": [], "code": 0}
    deadline = time.monotonic() + args.timeout

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not call.disconnected:
            ep.libHandleEvents(10)

    while time.monotonic() < deadline and not (call.confirmed and call.media) and not call.disconnected:
        ep.libHandleEvents(10)
    if call.confirmed and call.media:
        result["answered"] = True
        t0 = time.monotonic()
        pump(args.before)
        for d in args.dtmf:
            if call.disconnected:
                break
            try:
                call.dialDtmf(d)
            except pj.Error as e:
                result.setdefault("errors", []).append(e.info())
                break
            result["sent"].append([d, round(time.monotonic() - t0, 3)])
            pump(args.gap)
        pump(args.hold)
        if not call.disconnected:
            call.hangup(pj.CallOpParam())
            pump(2.0)
    result["code"] = call.code
    print(json.dumps(result), flush=True)
    del call
    acc.shutdown()
    del acc
    ep.libDestroy()
    return 0 if result["answered"] else 1


if __name__ == "__main__":
    sys.exit(main())
