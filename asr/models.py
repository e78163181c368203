"""Vosk model installation and verification.

``install(src, models_dir)`` takes a URL (default: the official vosk-model-small-cn-0.22 zip), a zip
file or a directory. It unpacks/copies into a temporary directory inside ``models_dir``, verifies the
files (against the reference table in ``model_checksums.json`` when the model is known, else the
structure Vosk needs), writes a manifest with the size and sha256 of every file (the "installed"
marker), and only then renames the directory into place atomically. A failure at any step leaves
nothing at the final path and nothing marked installed.

``verify(model_dir)`` re-checks an installed model against its manifest (and the reference table).
Files whose sha256 is unknown in the reference table are verified by their git blob id,
``sha1(b"blob <size>\\0" + data)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable

from asr.errors import ModelInstallError, ModelVerifyError

DEFAULT_MODEL_NAME = "vosk-model-small-cn-0.22"
MANIFEST = ".hotline-model.json"  # the "installed and verified" marker, written last
_CHECKSUMS_FILE = Path(__file__).with_name("model_checksums.json")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HASH_BLOCK = 1 << 20

# progress(stage, done, total): stage is "download", "unpack", "copy" or "verify"; total may be 0.
InstallProgress = Callable[[str, int, int], None]


def reference_table() -> dict:
    """{model name: {"url": ..., "files": {relpath: {"size", "sha256", "git_blob_sha1"}}}}."""
    return json.loads(_CHECKSUMS_FILE.read_text(encoding="utf-8"))["models"]


DEFAULT_MODEL_URL = reference_table()[DEFAULT_MODEL_NAME]["url"]


# ---------------------------------------------------------------------------------- structure
def check_structure(model_dir: str | Path) -> list[str]:
    """Files Vosk needs that are missing or empty (relative paths); [] when the structure is complete."""
    d = Path(model_dir)
    problems = []
    for rel in ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf"):
        p = d / rel
        if not p.is_file():
            problems.append(rel)
        elif rel == "am/final.mdl" and p.stat().st_size == 0:
            problems.append(rel + " (empty)")
    hclg = d / "graph" / "HCLG.fst"
    if not (hclg.is_file() and hclg.stat().st_size > 0):
        for rel in ("graph/HCLr.fst", "graph/Gr.fst"):
            p = d / rel
            if not p.is_file():
                problems.append(rel if (d / "graph").is_dir() else rel + " (or graph/HCLG.fst)")
            elif p.stat().st_size == 0:
                problems.append(rel + " (empty)")
    return problems


def model_status(model_dir: str | Path) -> str:
    """"installed" (by us: manifest present, structure complete), "external" (complete, no manifest:
    e.g. a model directory configured by hand), "incomplete" or "missing"."""
    d = Path(model_dir)
    if not d.is_dir():
        return "missing"
    if check_structure(d):
        return "incomplete"
    return "installed" if (d / MANIFEST).is_file() else "external"


def is_ready(model_dir: str | Path) -> bool:
    return model_status(model_dir) in ("installed", "external")


# ---------------------------------------------------------------------------------- hashing
def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str
    git_blob_sha1: str


def file_digest(path: str | Path) -> FileDigest:
    """sha256 and git blob sha1 of a file, in one streaming pass."""
    p = Path(path)
    size = p.stat().st_size
    h256 = hashlib.sha256()
    h1 = hashlib.sha1(b"blob %d\0" % size)
    n = 0
    with open(p, "rb") as f:
        while True:
            b = f.read(_HASH_BLOCK)
            if not b:
                break
            h256.update(b)
            h1.update(b)
            n += len(b)
    if n != size:  # changed while reading
        raise ModelVerifyError(f"{p}: file changed while it was being hashed", [str(p)])
    return FileDigest(size=size, sha256=h256.hexdigest(), git_blob_sha1=h1.hexdigest())


def _files(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            rel = Path(dirpath, n).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


# ---------------------------------------------------------------------------------- verification
@dataclass
class VerifyReport:
    path: Path
    name: str
    method: str  # "manifest+reference", "manifest", "reference", "structure"
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_reference(root: Path, ref_files: dict, digests: dict[str, FileDigest], progress, problems: list[str]) -> int:
    n = 0
    items = sorted(ref_files.items())
    for i, (rel, exp) in enumerate(items, 1):
        p = root / rel
        if not p.is_file():
            problems.append(f"missing file: {rel}")
            continue
        if "size" in exp and p.stat().st_size != exp["size"]:
            problems.append(f"size mismatch: {rel} ({p.stat().st_size} bytes, expected {exp['size']})")
            continue
        d = digests.get(rel) or file_digest(p)
        digests[rel] = d
        n += 1
        if exp.get("sha256"):
            if d.sha256 != exp["sha256"]:
                problems.append(f"checksum mismatch: {rel} (sha256 {d.sha256}, expected {exp['sha256']})")
        elif exp.get("git_blob_sha1"):
            if d.git_blob_sha1 != exp["git_blob_sha1"]:
                problems.append(
                    f"checksum mismatch: {rel} (git blob {d.git_blob_sha1}, expected {exp['git_blob_sha1']})"
                )
        if progress:
            progress("verify", i, len(items))
    return n


def verify(model_dir: str | Path, name: str | None = None, progress: InstallProgress | None = None) -> VerifyReport:
    """Check an installed model: structure, its manifest (size + sha256 of every file) and, for a
    model in the reference table, the reference checksums. Never raises for bad files: see ``problems``."""
    root = Path(model_dir)
    manifest = None
    mpath = root / MANIFEST
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            rep = VerifyReport(root, name or root.name, "manifest")
            rep.problems.append(f"{MANIFEST}: unreadable manifest ({e})")
            return rep
    name = name or (manifest or {}).get("name") or root.name
    ref = reference_table().get(name)
    method = "+".join(x for x in ("manifest" if manifest else "", "reference" if ref else "") if x) or "structure"
    rep = VerifyReport(root, name, method)
    if not root.is_dir():
        rep.problems.append(f"no model directory at {root}")
        return rep
    rep.problems.extend(f"missing file: {m}" for m in check_structure(root))
    digests: dict[str, FileDigest] = {}
    if manifest:
        files = manifest.get("files", {})
        items = sorted(files.items())
        for i, (rel, exp) in enumerate(items, 1):
            p = root / rel
            if not p.is_file():
                rep.problems.append(f"missing file: {rel}")
                continue
            if p.stat().st_size != exp.get("size"):
                rep.problems.append(f"size mismatch: {rel} ({p.stat().st_size} bytes, expected {exp.get('size')})")
                continue
            d = file_digest(p)
            digests[rel] = d
            rep.files_checked += 1
            if d.sha256 != exp.get("sha256"):
                rep.problems.append(f"checksum mismatch: {rel} (sha256 {d.sha256}, expected {exp.get('sha256')})")
            if progress:
                progress("verify", i, len(items))
        extra = sorted(set(_files(root)) - set(files))
        if extra:
            rep.notes.append(f"files not in the manifest: {', '.join(extra[:10])}")
    if ref:
        checked = _check_reference(root, ref["files"], digests, progress, rep.problems)
        rep.files_checked = max(rep.files_checked, checked)
    if not manifest:
        rep.notes.append("no manifest: this directory was not installed by `hotline models install`")
    # de-duplicate while keeping order (structure + manifest can name the same file)
    seen: set[str] = set()
    rep.problems = [p for p in rep.problems if not (p in seen or seen.add(p))]
    return rep


# ---------------------------------------------------------------------------------- install
@dataclass
class InstallResult:
    path: Path
    name: str
    method: str  # how it was verified: "reference" or "structure"
    files: int
    bytes: int
    source: str


def _is_url(src: str) -> bool:
    return bool(re.match(r"^(https?|ftp|file)://", src, re.IGNORECASE))


def _download(url: str, dest: Path, timeout: float, progress: InstallProgress | None) -> None:
    hint = (
        "If this machine has no network access, download the zip on a machine that has it, copy it here "
        "and run `hotline models install FILE.zip`."
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while True:
                b = resp.read(1 << 16)
                if not b:
                    break
                out.write(b)
                done += len(b)
                if progress:
                    progress("download", done, total)
            if total and done != total:
                raise ModelInstallError(f"download of {url} was cut short ({done} of {total} bytes). {hint}")
    except urllib.error.HTTPError as e:
        raise ModelInstallError(f"cannot download {url}: HTTP {e.code} {e.reason}. {hint}") from e
    except urllib.error.URLError as e:
        raise ModelInstallError(f"cannot download {url}: {e.reason}. {hint}") from e
    except (socket.timeout, TimeoutError) as e:
        raise ModelInstallError(f"cannot download {url}: timed out after {timeout:g} s. {hint}") from e
    except OSError as e:
        if isinstance(e, ModelInstallError):
            raise
        raise ModelInstallError(f"cannot download {url}: {e}. {hint}") from e


def _find_model_root(base: Path) -> Path | None:
    """The shallowest directory under ``base`` that holds am/final.mdl."""
    best = None
    for dirpath, dirs, _names in os.walk(base):
        dirs.sort()
        p = Path(dirpath)
        if (p / "am" / "final.mdl").exists():
            if best is None or len(p.parts) < len(best.parts):
                best = p
    return best


def _unzip(zpath: Path, dest: Path, label: str, progress: InstallProgress | None) -> None:
    try:
        with zipfile.ZipFile(zpath) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ModelInstallError(f"corrupt zip {label}: {bad} fails its CRC check")
            members = zf.infolist()
            total = sum(m.file_size for m in members)
            done = 0
            for m in members:
                pp = PurePosixPath(m.filename)
                if pp.is_absolute() or ".." in pp.parts or m.filename.startswith("\\"):
                    raise ModelInstallError(f"refusing zip {label}: unsafe member path {m.filename!r}")
                zf.extract(m, dest)
                done += m.file_size
                if progress:
                    progress("unpack", done, total)
    except zipfile.BadZipFile as e:
        raise ModelInstallError(f"corrupt zip {label}: {e}") from e
    except zlib.error as e:
        raise ModelInstallError(f"corrupt zip {label}: {e}") from e
    except EOFError as e:
        raise ModelInstallError(f"corrupt zip {label}: unexpected end of file") from e


def _copy_dir(src: Path, dest: Path, progress: InstallProgress | None) -> None:
    files = _files(src)
    total = sum((src / f).stat().st_size for f in files)
    done = 0
    for rel in files:
        s, d = src / rel, dest / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s, d)
        done += s.stat().st_size
        if progress:
            progress("copy", done, total)


def install(
    src: str | os.PathLike | None,
    models_dir: str | os.PathLike,
    name: str | None = None,
    progress: InstallProgress | None = None,
    timeout: float = 60.0,
) -> InstallResult:
    """Install a model from a URL, a zip or a directory into ``models_dir/<name>``.

    Raises :class:`ModelInstallError` (download, zip, bad source) or :class:`ModelVerifyError`
    (checksums, missing files), in which case nothing is left at the final path."""
    src = str(src) if src else DEFAULT_MODEL_URL
    models = Path(models_dir)
    models.mkdir(parents=True, exist_ok=True)
    if name is not None and not _NAME_RE.match(name):
        raise ModelInstallError(f"invalid model name {name!r} (letters, digits, '.', '_', '-')")
    tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=models))
    try:
        staged = tmp / "unpacked"
        staged.mkdir()
        if _is_url(src):
            zpath = tmp / "download.zip"
            _download(src, zpath, timeout, progress)
            _unzip(zpath, staged, src, progress)
            default_name = Path(urllib.parse.urlparse(src).path).stem
        else:
            sp = Path(src)
            if sp.is_dir():
                _copy_dir(sp, staged, progress)
                default_name = sp.resolve().name
            elif sp.is_file():
                if not zipfile.is_zipfile(sp):
                    raise ModelInstallError(f"corrupt zip {sp}: not a zip file (or a damaged one)")
                _unzip(sp, staged, str(sp), progress)
                default_name = sp.stem
            else:
                raise ModelInstallError(f"model source not found: {src} (give a URL, a .zip file or a directory)")
        root = _find_model_root(staged)
        if root is None:
            missing = check_structure(staged)
            raise ModelVerifyError(
                f"{src} does not contain a Vosk model: missing {', '.join(missing)}", [f"missing file: {m}" for m in missing]
            )
        if root != staged:
            default_name = root.name
        name = name or default_name
        if not _NAME_RE.match(name):
            raise ModelInstallError(f"cannot derive a model name from {src!r}; give one with --name")
        problems = [f"missing file: {m}" for m in check_structure(root)]
        ref = reference_table().get(name)
        digests: dict[str, FileDigest] = {}
        if ref:
            _check_reference(root, ref["files"], digests, progress, problems)
        if problems:
            raise ModelVerifyError(f"model {name} failed verification: " + "; ".join(problems), problems)
        files = {}
        total = 0
        rels = _files(root)
        for i, rel in enumerate(rels, 1):
            d = digests.get(rel) or file_digest(root / rel)
            files[rel] = {"size": d.size, "sha256": d.sha256, "git_blob_sha1": d.git_blob_sha1}
            total += d.size
            if progress:
                progress("verify", i, len(rels))
        manifest = {
            "name": name,
            "source": src if _is_url(src) else os.path.abspath(src),
            "verified_by": "reference" if ref else "structure",
            "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": files,
        }
        mtmp = root / (MANIFEST + ".tmp")
        mtmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        with open(mtmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(mtmp, root / MANIFEST)
        final = models / name
        old = None
        if final.exists() or final.is_symlink():
            old = models / f".old-{name}-{int(time.time() * 1000)}"
            os.rename(final, old)
        os.rename(root, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return InstallResult(path=final, name=name, method=manifest["verified_by"], files=len(files), bytes=total, source=src)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

