"""Playback cost of decrypt-on-read vs reading the plain file.

Creates a WAV (default 30 min, 2 channels, 8 kHz, 16-bit: the agent's recording format), ingests it
into encrypted storage through the real service code (own temp data dir + DB), then measures:

* throughput: streaming the whole file in the pieces an HTTP response would send
  (plain: 64 KiB reads of the WAV; encrypted: ``storage.stream_range`` incl. the sha256 check);
* first-byte latency: from "request" (DB lookup, key unwrap, open, header) to the first piece,
  at the start and at a random offset (a Range seek);
* the same through HTTP (uvicorn on 127.0.0.1, httpx client): FileResponse vs StreamingResponse.

Goal: decrypt-on-read within 1.2x the plain time. Prints figures; ``--append-results`` adds them to
bench/RESULTS.md.

    .venv/bin/python bench/crypto_stream.py [--minutes 30] [--reps 5] [--append-results]
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hotline_api.core.config import Settings  # noqa: E402
from hotline_api.db import migrate  # noqa: E402
from hotline_api.db.session import session_factory  # noqa: E402
from hotline_api.models.calls import Call, Recording  # noqa: E402
from hotline_api.services import storage  # noqa: E402

PIECE = 64 * 1024


def make_wav(path: Path, minutes: float) -> None:
    rate, n = 8000, int(minutes * 60 * 8000)
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, subtype="PCM_16", format="WAV") as f:
        for start in range(0, n, rate * 60):
            m = min(rate * 60, n - start)
            f.write((0.2 * rng.standard_normal((m, 2))).clip(-1, 1))


def plain_stream(path: Path, start: int = 0, stop: int | None = None):
    with open(path, "rb") as f:
        f.seek(start)
        left = (stop if stop is not None else os.path.getsize(path)) - start
        while left > 0:
            b = f.read(min(PIECE, left))
            if not b:
                break
            left -= len(b)
            yield b


def enc_stream(factory, ctx, rid, start=0, stop=None):
    with factory() as s:
        rec = storage.open_reader(s, ctx, rid)
        yield from storage.stream_range(rec, start, rec.size if stop is None else stop)


def timed(gen_fn, reps):
    totals, firsts, nbytes = [], [], 0
    for _ in range(reps):
        t0 = time.perf_counter()
        it = gen_fn()
        first = next(it)
        t1 = time.perf_counter()
        n = len(first)
        for b in it:
            n += len(b)
        totals.append(time.perf_counter() - t0)
        firsts.append(t1 - t0)
        nbytes = n
    return statistics.median(totals), statistics.median(firsts), nbytes


def http_bench(plain_path, factory, ctx, rid, reps):
    import httpx
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, StreamingResponse

    app = FastAPI()

    @app.get("/plain")
    def plain():
        return FileResponse(plain_path, media_type="audio/wav")

    @app.get("/enc")
    def enc():
        with factory() as s:
            rec = storage.open_reader(s, ctx, rid)
        return StreamingResponse(storage.stream_range(rec, 0, rec.size), media_type="audio/wav",
                                 headers={"Content-Length": str(rec.size)})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    out = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            for name in ("plain", "enc"):
                def gen(name=name):
                    with c.stream("GET", f"/{name}") as r:
                        yield from r.iter_raw(PIECE)
                out[name] = timed(gen, reps)
    finally:
        server.should_exit = True
        th.join(10)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--append-results", action="store_true")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        settings = Settings.load(env={"HOTLINE_DATA_DIR": str(Path(d) / "var")})
        settings.ensure_dirs()
        migrate.upgrade(settings.db_url)
        factory = session_factory(settings.db_url)
        ctx = storage.open_crypto(settings, factory)
        wav = Path(d) / "plain.wav"
        make_wav(wav, a.minutes)
        size = wav.stat().st_size
        keep = Path(d) / "spool.wav"
        keep.write_bytes(wav.read_bytes())
        now = datetime.now(timezone.utc)
        with factory() as s:
            call = Call(sip_call_id="bench", dialled="12388", status="ended")
            s.add(call)
            s.flush()
            rec = Recording(call_id=call.id, kind="call", status="complete", created_at=now, completed_at=now)
            s.add(rec)
            s.commit()
            rid = rec.id
        t0 = time.perf_counter()
        with factory() as s:
            storage.ingest_recording(s, ctx, rid, keep)
            s.commit()
        ingest_s = time.perf_counter() - t0
        enc_size = ctx.store.path(rid).stat().st_size

        rows = []
        p_tot, p_first, n1 = timed(lambda: plain_stream(wav), a.reps)
        e_tot, e_first, n2 = timed(lambda: enc_stream(factory, ctx, rid), a.reps)
        assert n1 == n2 == size
        rows.append(("full stream (in-process)", p_tot, e_tot, p_first, e_first))
        random.seed(2)
        offs = [random.randrange(0, size - 1_000_000) for _ in range(a.reps)]
        it = iter(offs * 2)
        p2 = timed(lambda: plain_stream(wav, (o := next(it)), o + 1_000_000), a.reps)
        it = iter(offs * 2)
        e2 = timed(lambda: enc_stream(factory, ctx, rid, (o := next(it)), o + 1_000_000), a.reps)
        rows.append(("1 MB range at random offset", p2[0], e2[0], p2[1], e2[1]))
        if not a.no_http:
            h = http_bench(wav, factory, ctx, rid, a.reps)
            rows.append(("full stream over HTTP (uvicorn)", h["plain"][0], h["enc"][0], h["plain"][1], h["enc"][1]))

    mb = size / 1e6
    lines = [f"file: {a.minutes:g} min, 2 ch, 8 kHz, 16-bit WAV = {mb:.1f} MB; encrypted {enc_size / 1e6:.1f} MB "
             f"(+{(enc_size - size)} B overhead); ingest (encrypt + sha256 + fsync) {ingest_s:.2f} s "
             f"({mb / ingest_s:.0f} MB/s); median of {a.reps}",
             "",
             "| case | plain total | encrypted total | ratio | plain first byte | encrypted first byte |",
             "|---|---|---|---|---|---|"]
    for name, pt, et, pf, ef in rows:
        thr = f" ({mb / pt:.0f} vs {mb / et:.0f} MB/s)" if "full" in name else ""
        lines.append(f"| {name}{thr} | {pt * 1000:.1f} ms | {et * 1000:.1f} ms | {et / pt:.2f}x | "
                     f"{pf * 1e3:.3f} ms | {ef * 1e3:.3f} ms |")
    text = "\n".join(lines)
    print(text)
    if a.append_results:
        res = REPO / "bench" / "RESULTS.md"
        if not res.exists():
            res.write_text(f"# Benchmark results\n\nMachine: {platform.node()} — {platform.processor() or platform.machine()}, "
                           f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}\n")
        with open(res, "a", encoding="utf-8") as f:
            f.write(f"\n## bench/crypto_stream.py — decrypt-on-read vs plain ({datetime.now():%Y-%m-%d %H:%M})\n\n"
                    f"{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
