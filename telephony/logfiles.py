"""Log files of the processes the SIP side starts (kamailio, agent workers).

They are opened in append mode (``O_APPEND``), so an external ``logrotate`` with ``copytruncate``
works while they run; in addition each file is rotated when its process (re)starts and the file has
grown past ``max_bytes``, so a deployment without logrotate stays bounded too."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_KEEP = 3


def rotate_if_large(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP) -> bool:
    """``path`` → ``path.1`` → … → ``path.<keep>`` (the oldest dropped) when ``path`` is larger than
    ``max_bytes``. Returns whether it rotated. Errors (permissions, a vanished file) are left to the
    caller's next open, which reports them."""
    p = Path(path)
    try:
        if p.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep, 0, -1):
        src = p if i == 1 else p.with_name(f"{p.name}.{i - 1}")
        dst = p.with_name(f"{p.name}.{i}")
        if src.exists():
            os.replace(src, dst)
    return True
