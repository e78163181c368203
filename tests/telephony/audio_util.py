"""Signal measurements for the recording tests (numpy only)."""
from __future__ import annotations

import numpy as np


def active_span(sig: np.ndarray, rate: int, rel_db: float = -30.0, win_s: float = 0.02) -> tuple[float, float]:
    """First and last instants where the short-time RMS is within ``rel_db`` of the signal's
    loudest window (the speech span)."""
    w = max(1, int(rate * win_s))
    n = len(sig) // w
    if n == 0:
        return 0.0, 0.0
    rms = np.sqrt(np.mean(sig[: n * w].astype(np.float64).reshape(n, w) ** 2, axis=1) + 1e-20)
    db = 20 * np.log10(rms / rms.max())
    idx = np.nonzero(db > rel_db)[0]
    if len(idx) == 0:
        return 0.0, 0.0
    return idx[0] * w / rate, (idx[-1] + 1) * w / rate


def best_ncc(haystack: np.ndarray, needle: np.ndarray) -> tuple[float, int]:
    """Maximum normalized cross-correlation of ``needle`` slid along ``haystack`` (FFT), and the
    offset (samples) where it occurs. 1.0 = identical up to gain."""
    a = haystack.astype(np.float64)
    b = needle.astype(np.float64)
    if len(b) > len(a):
        b = b[: len(a)]
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)[: len(a) - len(b) + 1]
    cs = np.concatenate([[0.0], np.cumsum(a * a)])
    eb = float(np.sum(b * b))
    ea = np.sqrt(np.maximum(cs[len(b):] - cs[: -len(b)], 1e-3 * eb + 1e-12))
    ncc = c / (ea * np.sqrt(eb) + 1e-20)
    k = int(np.argmax(ncc))
    return float(ncc[k]), k
