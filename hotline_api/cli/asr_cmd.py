"""ASR commands.

* ``hotline transcribe FILE [--model DIR] [--json] [--kind call|voicemail] [--speakers A,B]``:
  one-off transcription (JSON as in CONTRACT.md, plus ``turns``); progress on stderr.
* ``hotline transcribe --enqueue FILE``: import the file as a recording (kind ``import``) and queue
  a transcription job for the workers.
* ``hotline models install [SRC] [--name NAME]``: URL, zip or directory (default: the official
  vosk-model-small-cn-0.22 zip); ``hotline models verify [DIR]``; ``hotline models status``.
* ``hotline asr worker [--threads N]``: a transcription worker process; ``hotline asr jobs``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hotline_api.cli import CliError
from hotline_api.core.config import get_settings


def register(sub) -> None:
    t = sub.add_parser("transcribe", help="transcribe an audio file with Vosk (offline)")
    t.add_argument("file", help="audio file (WAV, FLAC, ...), mono or 2-channel (0 = caller, 1 = operator)")
    t.add_argument("--model", help="Vosk model directory (default: the batch model of the settings)")
    t.add_argument("--json", action="store_true", help="print the transcript JSON")
    t.add_argument("--kind", choices=["call", "voicemail", "import"], default=None,
                   help="recording kind, for default speaker names")
    t.add_argument("--speakers", help="comma-separated speaker names per channel (default: caller,operator)")
    t.add_argument("--replacements", help="replacement list file (default: DATA_DIR/asr/replacements.txt)")
    t.add_argument("--enqueue", action="store_true",
                   help="do not transcribe now: import the file as a recording and queue a job for the workers")
    t.set_defaults(func=_transcribe)

    m = sub.add_parser("models", help="Vosk models: install, verify, status")
    ms = m.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    ms.required = True
    inst = ms.add_parser("install", help="install a model from a URL, a zip or a directory")
    inst.add_argument("src", nargs="?", default=None,
                      help="URL, .zip file or model directory (default: the official vosk-model-small-cn-0.22 zip)")
    inst.add_argument("--name", help="directory name under DATA_DIR/models (default: from the source)")
    inst.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    inst.set_defaults(func=_install)
    ver = ms.add_parser("verify", help="verify an installed model's files against its checksums")
    ver.add_argument("dir", nargs="?", default=None, help="model directory (default: the live and batch models)")
    ver.set_defaults(func=_verify)
    st = ms.add_parser("status", help="show the configured models and whether they are installed")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)

    a = sub.add_parser("asr", help="transcription workers and jobs")
    asub = a.add_subparsers(dest="asr_command", metavar="SUBCOMMAND")
    asub.required = True
    w = asub.add_parser("worker", help="run a transcription worker process (until SIGTERM/SIGINT)")
    w.add_argument("--threads", type=int, default=None, help="job threads sharing one model (default: asr_workers)")
    w.add_argument("--poll", type=float, default=2.0, help="seconds between polls when idle (default 2)")
    w.add_argument("--lease", type=float, default=60.0, help="job lease in seconds, renewed by heartbeat (default 60)")
    w.add_argument("--exit-when-idle", action="store_true", help="exit when no job is pending")
    w.add_argument("--worker-id", default=None, help="name in claimed_by (default host:pid)")
    w.set_defaults(func=_worker)
    j = asub.add_parser("jobs", help="count transcription jobs by status")
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=_jobs)


# ---------------------------------------------------------------------------------- helpers
class _Progress:
    """Progress on stderr: a rewritten line on a terminal, a line every 10 % otherwise."""

    def __init__(self, label: str):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = -1.0
        self.t0 = time.monotonic()

    def __call__(self, done: float, total: float, unit: str = "s") -> None:
        frac = done / total if total else 1.0
        if not self.tty and (frac - self.last < 0.1 and frac < 1.0 or frac == self.last):
            return
        self.last = frac
        if unit == "B":
            what = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        elif unit == "s":
            what = f"{done:.0f}/{total:.0f} s"
        else:
            what = f"{done}/{total} {unit}"
        line = f"{self.label}: {frac * 100:3.0f}% ({what}, {time.monotonic() - self.t0:.0f} s elapsed)"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _fmt_t(s: float) -> str:
    return f"{int(s // 60):02d}:{s % 60:04.1f}"


# ---------------------------------------------------------------------------------- transcribe
def _transcribe(args) -> int:
    settings = get_settings()
    path = Path(args.file)
    if args.enqueue:
        from hotline_api.services.transcription import enqueue_import

        if not path.is_file():
            raise CliError(f"not a file: {path}")
        settings.ensure_dirs()
        try:
            rec_id, job_id = enqueue_import(path, settings)
        except Exception as e:  # e.g. schema not migrated
            raise CliError(f"cannot import {path.name}: {e} (run `hotline db upgrade` first?)") from e
        print(json.dumps({"recording_id": rec_id, "job_id": job_id}) if args.json
              else f"imported as recording {rec_id}; transcription job {job_id} queued")
        return 0

    from asr.engine import Transcriber, load_model
    from asr.errors import AudioInputError, ModelError
    from asr.postprocess import ParseError, Replacements

    from asr.audio import probe

    try:
        probe(path)  # bad input fails fast, before the model is loaded
    except AudioInputError as e:
        raise CliError(str(e), code=1) from e
    model_dir = Path(args.model) if args.model else settings.batch_model_dir
    try:
        model = load_model(model_dir)
    except ModelError as e:
        raise CliError(f"{e}. Install a model with `hotline models install` or pass --model DIR.") from e
    repl_path = Path(args.replacements) if args.replacements else settings.data_dir / "asr" / "replacements.txt"
    try:
        repl = Replacements.from_file(repl_path)
    except ParseError as e:
        raise CliError(str(e)) from e
    speakers = [s.strip() for s in args.speakers.split(",")] if args.speakers else None
    prog = _Progress(f"transcribing {path.name}")
    try:
        result = Transcriber(model, replacements=repl).transcribe(path, speakers=speakers, kind=args.kind, progress=prog)
    except AudioInputError as e:
        prog.end()
        raise CliError(str(e), code=1) from e
    prog.end()
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for t in result["turns"]:
            print(f"[{_fmt_t(t['start'])}-{_fmt_t(t['end'])}] {t['speaker']}: {t['text']}")
        print(f"({result['duration']:.1f} s of audio, rtf {result['rtf']:.3f})", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------- models
def _install(args) -> int:
    from asr.errors import ModelInstallError, ModelVerifyError
    from asr.models import DEFAULT_MODEL_URL, install

    settings = get_settings()
    settings.ensure_dirs()
    src = args.src or DEFAULT_MODEL_URL
    bars: dict[str, _Progress] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for b in bars.values():
                b.end()
            bars[stage] = _Progress(stage)
        bars[stage](done, total, unit="files" if stage == "verify" else "B")

    print(f"installing Vosk model from {src}", file=sys.stderr)
    try:
        res = install(src, settings.models_dir, name=args.name, progress=progress, timeout=args.timeout)
    except ModelVerifyError as e:
        raise CliError(f"{e}\nnothing was installed", code=1) from e
    except ModelInstallError as e:
        raise CliError(f"{e}\nnothing was installed", code=1) from e
    finally:
        for b in bars.values():
            b.end()
    print(f"installed {res.name} at {res.path} ({res.files} files, {res.bytes / 1e6:.1f} MB, verified by {res.method})")
    for label, d in (("live", settings.live_model_dir), ("batch", settings.batch_model_dir)):
        if Path(d).resolve() != res.path.resolve():
            print(f"note: the configured {label} model is {d}; set HOTLINE_VOSK_MODEL"
                  f"{'' if label == 'live' else ' / HOTLINE_VOSK_BATCH_MODEL'} to {res.path} to use this one",
                  file=sys.stderr)
    return 0


def _verify(args) -> int:
    from asr.models import verify

    settings = get_settings()
    dirs = [Path(args.dir)] if args.dir else list(dict.fromkeys([settings.live_model_dir, settings.batch_model_dir]))
    bad = 0
    for d in dirs:
        prog = _Progress(f"verifying {d.name}")
        rep = verify(d, progress=lambda stage, done, total: prog(done, total, unit="files"))
        prog.end()
        if rep.ok:
            print(f"OK {d} ({rep.files_checked} files checked, {rep.method})")
        else:
            bad += 1
            print(f"FAILED {d}:")
            for p in rep.problems:
                print(f"  {p}")
        for n in rep.notes:
            print(f"  note: {n}")
    return 1 if bad else 0


def _status(args) -> int:
    from asr.models import model_status

    settings = get_settings()
    data = {
        "live": {"dir": str(settings.live_model_dir), "status": model_status(settings.live_model_dir)},
        "batch": {"dir": str(settings.batch_model_dir), "status": model_status(settings.batch_model_dir)},
        "installed": sorted(p.name for p in settings.models_dir.glob("*") if p.is_dir() and not p.name.startswith("."))
        if settings.models_dir.is_dir() else [],
    }
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for k in ("live", "batch"):
            print(f"{k}: {data[k]['dir']} ({data[k]['status']})")
        print("installed: " + (", ".join(data["installed"]) or "(none)"))
    return 0


# ---------------------------------------------------------------------------------- worker
def _worker(args) -> int:
    from hotline_api.services import transcription

    from sqlalchemy.exc import OperationalError, ProgrammingError

    from hotline_api.db.session import make_engine

    settings = get_settings()
    settings.ensure_dirs()
    try:
        transcription.job_counts(make_engine(settings.db_url))
    except (OperationalError, ProgrammingError) as e:
        raise CliError(f"the database has no transcription tables ({e.orig}); run `hotline db upgrade` first") from e
    _wire_runtime(settings)
    transcription.run_worker(
        settings,
        threads=args.threads or settings.asr_workers,
        poll_interval=args.poll,
        lease_seconds=args.lease,
        exit_when_idle=args.exit_when_idle,
        worker_id=args.worker_id,
    )
    return 0


def _wire_runtime(settings) -> None:
    """Use the composition root (``hotline_api.wiring``) when present, exactly as
    ``hotline serve --only worker`` does: decrypting reads of recordings, field cipher, log masking,
    and drafting on each finished transcript. A wrong master key stops the worker here."""
    import importlib

    from hotline_api.services import transcription

    try:
        wiring = importlib.import_module("hotline_api.wiring")
        needed = (wiring.open_runtime, wiring.decrypting_audio_opener, wiring.transcript_to_draft)
    except (ImportError, AttributeError):
        _load_subscribers()
        return
    open_runtime, opener, to_draft = needed
    try:
        factory, ctx = open_runtime(settings)
    except Exception as e:  # e.g. storage.CryptoStartupError: refuse clearly, touch nothing
        raise CliError(f"cannot start the transcription worker: {e}") from e
    transcription.set_audio_opener(opener(factory, ctx))
    transcription.subscribe(to_draft(factory, settings))


def _load_subscribers() -> None:
    """Subscribe the next stage (drafting) in the worker process, when it is present:
    ``hotline_api.services.cases.on_transcript_completed(session, recording_id, transcript)``."""
    import importlib
    import logging

    from hotline_api.db.session import session_factory
    from hotline_api.services import transcription

    log = logging.getLogger(__name__)
    try:
        cases = importlib.import_module("hotline_api.services.cases")
    except ModuleNotFoundError as e:
        if e.name != "hotline_api.services.cases":
            log.exception("drafting is not available in this worker")
        return
    except Exception:  # transcription must go on even if the next stage is broken
        log.exception("drafting is not available in this worker")
        return
    hook = getattr(cases, "on_transcript_completed", None)
    if hook is None:
        return
    settings = get_settings()
    sessions = session_factory(settings.db_url)

    def draft(ev) -> None:
        with sessions() as s:
            hook(s, ev.recording_id, ev.transcript, settings=settings)
            s.commit()

    transcription.subscribe(draft)
    log.info("drafting subscribed to finished transcripts")


def _jobs(args) -> int:
    from hotline_api.db.session import make_engine
    from hotline_api.services.transcription import job_counts

    counts = job_counts(make_engine(get_settings().db_url))
    if args.json:
        print(json.dumps(counts))
    else:
        for k in ("waiting_for_model", "queued", "running", "done", "failed"):
            print(f"{k}: {counts.get(k, 0)}")
    return 0
