from __future__ import annotations

import os

import pytest

from asr.postprocess import ParseError, Replacements, join_cjk, join_texts, parse_replacements


def test_join_cjk_removes_spaces_between_chinese_only():
    assert join_cjk("我 要 举报 一下") == "我要举报一下"
    assert join_cjk("我 在 3 号 楼") == "我在 3 号楼"
    assert join_cjk("打 了 110 电话 ok 好 的") == "打了 110 电话 ok 好的"
    assert join_cjk("  多   空格  ") == "多空格"
    assert join_cjk("안녕 하세요") == "안녕 하세요"  # Korean keeps its spaces


def test_join_texts():
    assert join_texts("我们", "走吧") == "我们走吧"
    assert join_texts("abc", "走吧") == "abc 走吧"
    assert join_texts("", "x") == "x"


def test_replacement_file_parsing_and_reload(tmp_path):
    p = tmp_path / "repl.txt"
    p.write_text("# 常见误识别\n纪 委 书 记 → 纪委书记\n举 办 => 举报\n镇 长\t镇长\n", encoding="utf-8")
    r = Replacements.from_file(p)
    assert r.apply(join_cjk("我 要 举 办 他")) == "我要举报他"
    p.write_text("举办 -> 检举\n", encoding="utf-8")
    os.utime(p, ns=(1, 10**18))  # force a new mtime even on coarse clocks
    assert r.apply("我要举办他") == "我要检举他"
    p.unlink()
    assert r.apply("我要举办他") == "我要举办他"


def test_bad_replacement_line_names_line():
    with pytest.raises(ParseError, match="r.txt:2"):
        parse_replacements("a -> b\nno separator here\n", "r.txt")
    assert parse_replacements("长 -> x\n长长 -> y\n")[0][0] == "长长"  # longest first
