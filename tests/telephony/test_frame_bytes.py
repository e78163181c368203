"""telephony.agent._frame_bytes: the fast copy of a pjsua2 frame buffer equals bytes() exactly."""
from __future__ import annotations

import random

import pytest

pj = pytest.importorskip("pjsua2")

from telephony.agent import _frame_bytes, _make_frame_reader  # noqa: E402


def test_the_fast_path_is_in_use_on_this_build():
    assert _frame_bytes is not bytes
    assert _make_frame_reader() is not bytes


@pytest.mark.parametrize("size", [0, 1, 2, 319, 320, 640, 1920])
def test_fast_copy_equals_bytes_for_frames_of_every_size(size):
    rng = random.Random(size)
    data = [rng.randrange(256) for _ in range(size)]
    frame = pj.MediaFrame()
    frame.buf = pj.ByteVector(data)
    got = _frame_bytes(frame.buf)
    assert isinstance(got, bytes) and got == bytes(data) == bytes(frame.buf)


def test_the_copy_is_independent_of_the_vector():
    v = pj.ByteVector([1, 2, 3, 4])
    got = _frame_bytes(v)
    v.clear()
    v.append(9)
    assert got == b"\x01\x02\x03\x04" and _frame_bytes(v) == b"\x09"
