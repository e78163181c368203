"""Issue 11 C: the service's files are its own. Whatever the umask it was started with (022 here,
as a login shell has), the data dir, the database (and its WAL), the keys and the call spool come
out as files 0600 and folders 0700."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
HOTLINE = Path(sys.executable).with_name("hotline")


def _env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_") or k == "HOTLINE_SHARED_DIR"}
    env["HOTLINE_DATA_DIR"] = str(data_dir)
    return env


def _run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess:
    cmd = [str(HOTLINE)] if HOTLINE.exists() else [sys.executable, "-m", "hotline_api.cli"]
    return subprocess.run(cmd + args, env=_env(data_dir), cwd=REPO, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: os.umask(0o022))


def _modes(root: Path) -> dict[str, str]:
    """Every path under root (root included) whose mode is not 0700 (folders) / 0600 (files)."""
    bad = {}
    for p in [root, *root.rglob("*")]:
        st = p.lstat()
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) != want:
            bad[str(p.relative_to(root.parent))] = oct(stat.S_IMODE(st.st_mode))
    return bad


def test_keys_init_and_db_upgrade_leave_only_private_files(tmp_path):
    data = tmp_path / "var"
    for args in (["keys", "init"], ["db", "upgrade"]):
        r = _run(args, data)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    files = {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()}
    assert "hotline.db" in files and any(f.startswith("keys/") for f in files), files
    assert _modes(data) == {}


def test_existing_permissive_data_dir_and_database_are_tightened(tmp_path):
    """An install made before the fix (0755 folders, 0644 database) is set right on the next start."""
    data = tmp_path / "var"
    assert _run(["db", "upgrade"], data).returncode == 0
    os.chmod(data, 0o755)
    (data / "spool").mkdir(exist_ok=True)
    os.chmod(data / "spool", 0o755)
    os.chmod(data / "hotline.db", 0o644)
    r = _run(["db", "upgrade"], data)
    assert r.returncode == 0, r.stderr
    assert _modes(data) == {}


def test_every_cli_entry_sets_a_private_umask(tmp_path):
    """`hotline ...` and the SIP pool worker's fast path (`hotline sip-worker`, which skips the CLI
    parser): the umask is 077 before anything runs, and every child inherits it."""
    code = ("import os, sys\n"
            "from hotline_api.cli import main\n"
            "try:\n    main([sys.argv[1], '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(oct(os.umask(0)))\n")
    for entry in ("sip-worker", "keys"):
        r = subprocess.run([sys.executable, "-c", code, entry], cwd=REPO, env=_env(tmp_path / "var"), capture_output=True,
                           text=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
        assert r.stdout.strip().splitlines()[-1] == "0o77", (entry, r.stdout, r.stderr)


def test_spool_wav_and_sidecar_are_created_0600_whatever_the_umask(tmp_path):
    from telephony import recorder

    spool, recs = tmp_path / "spool", tmp_path / "recordings"
    old = os.umask(0o022)
    try:
        rec = recorder.SpoolRecorder(spool, recs, str(uuid.uuid4()), "call-1", sample_rate=8000)
        rec.write(np.zeros((800, 2), dtype=np.int16))
        rec.flush()
        assert stat.S_IMODE(rec.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(rec.sidecar.stat().st_mode) == 0o600
        res = rec.finish()
        assert stat.S_IMODE(Path(res.path).stat().st_mode) == 0o600 and res.frames == 800
        # crash repair rewrites a spool file: the rewritten file is 0600 too
        rec2 = recorder.SpoolRecorder(spool, recs, str(uuid.uuid4()), "call-2", sample_rate=8000)
        rec2.write(np.ones((800, 2), dtype=np.int16))
        rec2.flush()
        with open(rec2.path, "r+b") as f:  # a stale header, as after a SIGKILL
            f.seek(4)
            f.write(b"\0\0\0\0")
        res2 = recorder.recover_file(rec2.sidecar, recs)
        assert stat.S_IMODE(Path(res2.path).stat().st_mode) == 0o600
    finally:
        os.umask(old)
