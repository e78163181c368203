import pytest

from recordings.ranges import RangeError, coverage, merge, parse_range


@pytest.mark.parametrize("h,size,exp", [
    (None, 100, None), ("bytes=0-", 100, (0, 100)), ("bytes=10-19", 100, (10, 20)),
    ("bytes=90-500", 100, (90, 100)), ("bytes=-10", 100, (90, 100)), ("bytes=-500", 100, (0, 100)),
    ("BYTES = 5 - 5", 100, (5, 6)),
])
def test_parse_good(h, size, exp):
    assert parse_range(h, size) == exp


@pytest.mark.parametrize("h,status", [
    ("bytes=abc", 400), ("items=0-1", 400), ("bytes=5-1", 400), ("bytes=0-1,3-4", 400), ("bytes=-", 400),
    ("bytes=100-", 416), ("bytes=1000-2000", 416), ("bytes=-0", 416), ("bytes=" + "9" * 30 + "-", 400),
    ("bytes=0-1" + " " * 200, 400),
])
def test_parse_bad(h, status):
    with pytest.raises(RangeError) as e:
        parse_range(h, 100)
    assert e.value.status == status


def test_merge_and_coverage():
    assert merge([[10, 20], [0, 5], [5, 8], [15, 30]]) == [[0, 8], [10, 30]]
    assert coverage([[0, 50]], 0, 100) == 0.5
    assert coverage([[0, 50], [40, 95]], 0, 100) == 0.95
    assert coverage([[0, 44]], 44, 144) == 0.0  # header bytes do not count as listening
