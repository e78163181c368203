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


def windowed_match(haystack: np.ndarray, needle: np.ndarray, rate: int, win_s: float = 0.5,
                   min_rel_rms: float = 0.1) -> list[tuple[float, float, float]]:
    """``needle`` cut into ``win_s`` windows (its quiet ones, below ``min_rel_rms`` of its loudest,
    left out), each looked up in ``haystack`` on its own: a list of (window start in the needle,
    best NCC, lag = where it was found minus where it sits in the needle, both in seconds).

    A jitter buffer that grows after a late burst of RTP (the sender or the network stalled) or
    shrinks again by discarding a frame shifts the rest of the audio by tens of milliseconds: a
    single whole-signal correlation then drops although every word is there. Per window, the speech
    is still found, with lags that stay close together."""
    w = max(1, int(rate * win_s))
    starts = list(range(0, max(1, len(needle) - w + 1), w))
    rms = [float(np.sqrt(np.mean(needle[k: k + w].astype(np.float64) ** 2))) for k in starts]
    top = max(rms) if rms else 0.0
    out = []
    for k, r in zip(starts, rms):
        if top == 0.0 or r < min_rel_rms * top:
            continue
        ncc, at = best_ncc(haystack, needle[k: k + w])
        out.append((k / rate, ncc, (at - k) / rate))
    return out


def assert_speech_present(haystack: np.ndarray, needle: np.ndarray, rate: int, min_ncc: float = 0.8,
                          share: float = 0.75, max_spread_s: float = 0.3) -> float:
    """The needle's speech is in the haystack, in order: at least ``share`` of its windows match
    with NCC above ``min_ncc``, and their lags lie within ``max_spread_s`` of each other (jitter-buffer
    adaptation, not reordering or a second copy). Returns the median lag in seconds."""
    found = windowed_match(haystack, needle, rate)
    assert found, "the reference holds no speech"
    good = [f for f in found if f[1] > min_ncc]
    assert len(good) >= share * len(found), f"speech windows (start, ncc, lag): {found}"
    lags = sorted(f[2] for f in good)
    assert lags[-1] - lags[0] <= max_spread_s, f"lags spread too far: {found}"
    return lags[len(lags) // 2]
