"""Bad input gives a clear error and changes nothing; the CLI commands work offline."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hotline_api.cli import main
from hotline_api.drafting import MAX_INPUT_CHARS, DraftInputError, load_transcript_file, make_draft
from tests.conftest import shared_path


@pytest.mark.parametrize("kwargs,msg", [
    ({"text": ""}, "empty"),
    ({"text": "   \n "}, "empty"),
    ({"text": "字" * (MAX_INPUT_CHARS + 1)}, "too long"),
    ({"turns": []}, "empty"),
    ({"turns": [{"speaker": "robot", "text": "你好"}]}, "unknown speaker"),
    ({"turns": [{"speaker": "caller", "text": 5}]}, "expected text"),
    ({"turns": "not a list"}, "expected a list"),
])
def test_bad_input_api(kwargs, msg):
    with pytest.raises(DraftInputError, match=msg):
        make_draft(**kwargs)


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_bad_files(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    big = tmp_path / "big.txt"
    big.write_text("举报" * 600_000)  # about 1.2 million characters / 3.6 MB
    badjson = tmp_path / "bad.json"
    badjson.write_text('{"turns": [')
    speaker = tmp_path / "speaker.json"
    speaker.write_text(json.dumps({"turns": [{"speaker": "judge", "text": "你好"}]}))
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("我要反映镇长收钱".encode("gbk"))
    before = sorted(p.name for p in tmp_path.iterdir())
    for path, msg in ((empty, "empty"), (big, "too large"), (badjson, "invalid JSON"),
                      (speaker, "unknown speaker 'judge'"), (gbk, "not UTF-8"), (tmp_path / "missing.txt", "no such file")):
        rc, out, err = run_cli(capsys, "draft", str(path), "--json")
        assert rc == 2 and out == "", path
        assert msg in err and "Traceback" not in err, (path, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_load_transcript_file_forms(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"turns": [{"speaker": "caller", "text": "你好"}]}), encoding="utf-8")
    assert load_transcript_file(str(p)) == (None, [{"speaker": "caller", "text": "你好"}])
    p.write_text(json.dumps({"text": "你好 我 要 反映", "channels": []}), encoding="utf-8")
    assert load_transcript_file(str(p)) == ("你好 我 要 反映", None)


def test_cli_draft_text_and_json(tmp_path, capsys):
    f = tmp_path / "call.txt"
    f.write_text("喂 你好 我 要 举抱 我们 县 水利局 的 举长 钱立伟 收 了 包工头 三万 多 块 好处费", encoding="utf-8")
    rc, out, err = run_cli(capsys, "draft", str(f), "--json", "--received", "2025-09-30")
    assert rc == 0
    d = json.loads(out)
    for k in ("category", "issue_types", "subjects", "places", "real_name", "reporter_name", "reporter_phone",
              "urgent", "duplicate_hint", "amount_yuan", "summary", "evidence", "confidence"):
        assert k in d
    assert d["subjects"][0]["title"] == "局长" and d["amount_yuan"] == 30000
    assert d["deadlines"] == {}  # anonymous: no acceptance notice
    rc, out, err = run_cli(capsys, "draft", str(f))
    assert rc == 0 and "被反映人: 县水利局局长钱立伟" in out


def test_cli_stdin():
    r = subprocess.run([sys.executable, "-m", "hotline_api.cli", "draft", "-", "--json"],
                       input="我 叫 秦志坚 电话 一三八 零零一二 三四五六 我 反映 镇长 吕德明 收 了 五万 块".encode(),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["reporter_phone"] == "13800123456" and d["real_name"] is True


def test_cli_batch_and_eval_on_own_file(tmp_path, capsys):
    recs = [
        {"id": "x1", "turns": [{"speaker": "caller", "text": "我反映镇长吕德明收了五万块钱。"}],
         "asr_text": "我 反映 镇长 吕德明 收 了 五万 块 钱",
         "labels": {"category": "检举控告", "issue_types": ["受贿行贿"], "subjects": [{"name": "吕德明", "title": "镇长", "unit": "某镇"}],
                    "places": [], "real_name": False, "reporter_name": "", "reporter_phone": "", "urgent": False,
                    "duplicate_hint": False, "amount_yuan": 50000, "summary": ""}},
        {"id": "x2", "turns": [{"speaker": "caller", "text": "喂？打错了，不好意思。"}], "asr_text": "喂 打错 了 不好意思",
         "labels": {"category": "无实质内容", "issue_types": [], "subjects": [], "places": [], "real_name": False,
                    "reporter_name": "", "reporter_phone": "", "urgent": True, "duplicate_hint": False,
                    "amount_yuan": None, "summary": ""}},
    ]
    f = tmp_path / "own.jsonl"
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n", encoding="utf-8")
    rc, out, err = run_cli(capsys, "draft", str(f), "--field", "turns", "--json")
    lines = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and [x["id"] for x in lines] == ["x1", "x2"] and "drafted 2/2" in err
    rc, out, err = run_cli(capsys, "eval-drafts", str(f), "--field", "asr_text")
    m = dict(line.split(": ") for line in out.splitlines())
    assert rc == 0
    assert list(m) == ["category_accuracy", "urgent_recall", "urgent_precision", "real_name_accuracy",
                       "subject_name_recall", "unit_recall", "issue_type_f1", "amount_accuracy", "phone_accuracy",
                       "place_recall"]
    assert m["category_accuracy"] == "1.000" and m["amount_accuracy"] == "1.000"
    assert m["urgent_recall"] == "0.000"  # the second record is labeled urgent on purpose
    assert m["unit_recall"] == "0.000"  # '某镇' is not said in the call
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n{oops\n')
    rc, out, err = run_cli(capsys, "eval-drafts", str(bad))
    assert rc == 2 and "line" in err


def test_eval_metrics_exact_definitions():
    from hotline_api.drafting.evaluate import score

    gold = {"category": "检举控告", "urgent": True, "real_name": True, "amount_yuan": None, "reporter_phone": "1",
            "issue_types": ["a", "b"], "places": ["甲 县", "乙镇"],
            "subjects": [{"name": "韦德生", "unit": "某镇粮管所"}, {"name": "", "unit": "某村"}]}
    pred = {"category": "检举控告", "urgent": False, "real_name": True, "amount_yuan": 0, "reporter_phone": "1",
            "issue_types": ["a", "c"], "places": ["甲县"],
            "subjects": [{"name": "魏德生", "unit": "粮管所"}, {"name": "x", "unit": "某村委会"}]}
    m = score([(gold, pred)])
    assert m["subject_name_recall"] == 1.0  # same toneless pinyin
    assert m["unit_recall"] == 1.0  # contained in / contains, spaces removed
    assert m["issue_type_f1"] == pytest.approx(0.5)
    assert m["amount_accuracy"] == 0.0  # null must stay null
    assert m["urgent_recall"] == 0.0 and m["place_recall"] == 0.5


def test_dev_file_meets_acceptance(capsys):
    path = shared_path("data", "cases_dev.jsonl")
    rc, out, _ = run_cli(capsys, "eval-drafts", str(path), "--field", "asr_text")
    m = {k: float(v) for k, v in (line.split(": ") for line in out.splitlines())}
    mins = {"category_accuracy": 0.85, "urgent_recall": 1.0, "urgent_precision": 0.6, "real_name_accuracy": 0.9,
            "subject_name_recall": 0.8, "unit_recall": 0.7, "issue_type_f1": 0.7, "amount_accuracy": 0.85,
            "phone_accuracy": 0.9}
    assert rc == 0
    for k, v in mins.items():
        assert m[k] >= v, (k, m[k])
