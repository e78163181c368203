"""Is the service running on this data dir? Every `hotline serve` process (the supervisor and each
part) holds a shared lock on ``run_dir/serve.lock`` for its lifetime; a command that must not run
beside the service (re-keying the field key, which running processes cannot follow) asks for the
lock exclusively and is refused while any holder lives. The kernel drops the lock of a process
that dies, ``kill -9`` included. It covers the processes of this machine only."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

_held: list[int] = []  # fds kept open (and locked) until the process exits


def _path(settings) -> Path:
    p = Path(settings.run_dir) / "serve.lock"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def hold_service_lock(settings) -> None:
    """Mark this process as part of the running service (shared lock, kept until exit)."""
    fd = os.open(_path(settings), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held.append(fd)


def service_running(settings) -> bool:
    """True while any `hotline serve` process of this data dir lives (other than this one)."""
    fd = os.open(_path(settings), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
