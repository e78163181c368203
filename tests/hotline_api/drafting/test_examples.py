"""Drafting on transcripts written for these tests (none of them from the dev set): plain ASR
text with homophone errors, and speaker turns."""
from __future__ import annotations

import pytest
from pypinyin import lazy_pinyin

from hotline_api.drafting import make_draft

GREETING_ASR = "您好 这里 是 青川县 纪委 监委 一二三八八 举报电话 本次 通话 将 被 录音 请问 您 要 反映 什么 问题 "
GREETING = {"speaker": "operator", "text": "您好，这里是青川县纪委监委12388举报电话，本次通话将被录音，请问您要反映什么问题？"}


def op(t):
    return {"speaker": "operator", "text": t}


def ca(t):
    return {"speaker": "caller", "text": t}


def names(d):
    return [s["name"] for s in d["subjects"]]


def same_py(a, b):
    return lazy_pinyin(a) == lazy_pinyin(b)


# --------------------------------------------------------------------------- titles
def test_homophone_garbled_title_asr():
    d = make_draft(text=GREETING_ASR + "喂 你好 我 要 举抱 我们 县 水利局 的 举长 钱立伟 他 去年 修 水渠 的 时候 "
                   "收 了 包工头 三万 多 块 好处费 工程 质量 很 差 到 现在 都 漏水 名字 我 就 不 留 了")
    assert d["category"] == "检举控告"
    assert [(s["name"], s["title"]) for s in d["subjects"]] == [("钱立伟", "局长")]
    assert "水利局" in d["subjects"][0]["unit"]
    assert d["amount_yuan"] == 30000
    assert "受贿行贿" in d["issue_types"]
    assert d["real_name"] is False and d["reporter_phone"] == ""
    assert "青川县" in d["places"]


def test_homophone_school_head_and_company():
    d = make_draft(text="你好 我 是 加长 我 反应 一下 城关 小学 的 效长 彭卫红 她 让 每个 学生 交 二百 块 资料费 "
                   "说 是 买 教辅 其实 是 她 表哥 的 工司 印 的 我们 家长 都 有 意见")
    assert [(s["name"], s["title"]) for s in d["subjects"]] == [("彭卫红", "校长")]
    assert "城关小学" in d["subjects"][0]["unit"]
    assert d["category"] == "检举控告"
    assert d["amount_yuan"] == 200


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("spoken,value", [
    ("一百二十万", 1_200_000), ("三万多", 30_000), ("五六千", 5_000), ("十几万", 100_000), ("两千四百块", 2_400),
    ("八十多万", 800_000), ("三四万", 30_000), ("一万二", 12_000),
])
def test_spoken_amounts(spoken, value):
    d = make_draft(turns=[GREETING, ca(f"我要反映我们村的会计冯德海，他挪用了村里的修路款，前后一共{spoken}，村民都不知道。")])
    assert d["amount_yuan"] == value


def test_amount_ignores_non_money_numbers():
    d = make_draft(turns=[GREETING, ca("我们村有三百多户，两千多亩地，支书何长江今年五十多岁，上个月摆了四十桌酒席，"
                                       "收了礼金六万多，八项规定都不管。")])
    assert d["amount_yuan"] == 60_000


def test_no_amount_stays_null():
    d = make_draft(turns=[GREETING, ca("我反映我们镇的镇长卢国栋，他天天上班时间打牌，三个月了，一个礼拜就来两天。")])
    assert d["amount_yuan"] is None


def test_spoken_phone_number_in_groups_and_asr():
    d = make_draft(turns=[GREETING, ca("我叫邵春燕，电话一三九，零八七六，五四三二。"), op("好的，我们会依规依纪处理。")])
    assert d["reporter_phone"] == "13908765432"
    d2 = make_draft(text="喂 我 想 反映 个 事情 我 的 电话 是 一八六 二五三零 七七一四 你们 打 给 我")
    assert d2["reporter_phone"] == "18625307714"
    # hotline and emergency numbers are not the reporter's phone
    d3 = make_draft(turns=[GREETING, ca("我打了一一零，也打了一二三四五，都说不归他们管。")])
    assert d3["reporter_phone"] == ""


# --------------------------------------------------------------------------- reporter
def test_name_refused_then_given():
    d = make_draft(turns=[
        GREETING,
        ca("我要反映石门镇林业站站长龚建明，他把护林员的工资扣下来自己拿了。名字我就不说了吧。"),
        op("您可以放心，我们会严格保密。方便留个姓名吗？"),
        ca("那……算了，我还是说吧，我叫欧阳丽华，电话是一三九，零八七六，五四三二。"),
    ])
    assert d["real_name"] is True
    assert d["reporter_name"] == "欧阳丽华"
    assert d["reporter_phone"] == "13908765432"
    assert names(d) == ["龚建明"]


def test_anonymous_caller_with_phone_is_not_real_name():
    d = make_draft(turns=[GREETING, ca("我反映县人社局科长贾世平吃拿卡要。电话可以留，一五八零三三二七七六一，名字就不说了。")])
    assert d["real_name"] is False
    assert d["reporter_phone"] == "15803327761"


def test_operator_name_and_greeting_unit_not_used():
    d = make_draft(turns=[GREETING, ca("你好，我想问一下，网上举报以后多久会有回复？"),
                          op("一般在十五个工作日内会告知受理情况。我姓刘，工号一零二。")])
    assert d["reporter_name"] == ""
    assert d["subjects"] == []
    assert d["category"] == "咨询"


def test_reporter_from_i_am_place_pattern_asr():
    d = make_draft(text=GREETING_ASR + "我 是 白沙镇 红岩村 的 陶建华 我们 村 的 村主人 罗大海 把 上面 发 的 "
                   "危房 改造 补贴 截留 了 一共 十来 万 我 电化 一三五 七二零 四六八一九")
    assert d["real_name"] is True and d["reporter_name"] == "陶建华"
    assert d["reporter_phone"] == "13572046819"
    assert [(s["name"], s["title"]) for s in d["subjects"]] == [("罗大海", "村主任")]
    assert d["subjects"][0]["unit"] == "红岩村"
    assert d["amount_yuan"] == 100_000
    assert {"白沙镇", "红岩村", "青川县"} <= set(d["places"])


# --------------------------------------------------------------------------- subjects
def test_two_subjects_in_one_call():
    d = make_draft(turns=[GREETING, ca("我举报石门镇派出所所长黄建军和副所长唐志刚，他们收了赌场老板的钱，抓了人又放了。"),
                          op("请问大概收了多少？"), ca("听说一人拿了五万。")])
    got = {(s["name"], s["title"]) for s in d["subjects"]}
    assert ("黄建军", "所长") in got and ("唐志刚", "副所长") in got
    assert all("派出所" in s["unit"] for s in d["subjects"])
    assert "受贿行贿" in d["issue_types"]


def test_two_subjects_name_before_title_asr():
    d = make_draft(text="你好 我 反映 县 交通局 孔德明 局长 和 他 手下 的 路政 股 股长 邹海涛 两个 人 "
                   "把 修路 的 工程 包给 自己 亲戚 收 回扣 大概 二十多万")
    got = [s["name"] for s in d["subjects"]]
    assert "孔德明" in got and "邹海涛" in got
    assert d["amount_yuan"] == 200_000


def test_unnamed_village_party_secretary():
    d = make_draft(turns=[GREETING, ca("我是云台乡石板村的，我们村的村支书把低保名额都给了他自己的亲戚，真正困难的人家一户都没有。"),
                          op("请问支书叫什么名字？"), ca("名字我不敢讲，讲了他就知道是我。")])
    assert d["category"] == "检举控告"
    assert len(d["subjects"]) == 1
    s = d["subjects"][0]
    assert s["name"] == "" and s["title"] == "村支书" and s["unit"] == "石板村"
    assert "侵害群众利益" in d["issue_types"]


# --------------------------------------------------------------------------- category
def test_out_of_scope_grievance_mixed_with_allegation_is_complaint():
    d = make_draft(turns=[
        GREETING,
        ca("我跟邻居为了宅基地的事吵架，他把我打伤了，医药费一分都不给。"),
        op("邻里纠纷建议您通过调解或者法院解决，我们这里受理公职人员违纪违法的问题。"),
        ca("我知道，我要说的是派出所的民警吴海涛，他收了我邻居两千块钱，到现在都不立案。"),
    ])
    assert d["category"] == "检举控告"
    assert names(d) == ["吴海涛"]
    assert d["amount_yuan"] == 2000


def test_out_of_scope_with_routing():
    d = make_draft(turns=[GREETING, ca("我在工地上干活，包工头欠了我三个月工资，一万八，一直拖着不给。"),
                          op("请问涉及公职人员吗？"), ca("没有，就是私人老板。"),
                          op("这属于劳动争议，不属于纪检监察机关受理范围，建议您向人社部门劳动保障监察反映。")])
    assert d["category"] == "业务范围外"
    assert d["routing"]["agency"] == "labour"
    assert d["amount_yuan"] == 18_000
    assert d["subjects"] == [] and d["issue_types"] == []


def test_out_of_scope_consumer_fraud_voicemail():
    d = make_draft(text="喂 你好 我 爸 在 集市 上 被 卖 假药 的 骗 了 三千 多 块 那个 摊子 现在 找 不到 了 "
                   "你们 能 不能 帮 我们 把 钱 要 回来")
    assert d["category"] == "业务范围外"
    assert d["routing"]["agency"] in ("police", "market_regulation")
    assert d["amount_yuan"] == 3000


def test_consultation_appeal_suggestion_and_nothing():
    c = make_draft(turns=[GREETING, ca("我想咨询一下，实名举报的话需要准备哪些材料，能不能寄过去？")])
    assert c["category"] == "咨询"
    a = make_draft(turns=[GREETING, ca("我是县供电所的职工，去年给了我一个党内警告处分，我觉得处理太重了，事实也没有查清楚，我想申诉。")])
    assert a["category"] == "申诉"
    s = make_draft(turns=[GREETING, ca("我提个建议，不是举报谁。镇里的便民服务大厅老是没人值班，群众跑好几趟都办不成事，"
                                       "希望你们督促一下，别搞形式主义。")])
    assert s["category"] == "批评建议"
    assert s["issue_types"] == ["形式主义官僚主义"]
    n = make_draft(turns=[GREETING, ca("喂？喂？听得见吗？信号不好，我等下再打。")])
    assert n["category"] == "无实质内容"


# --------------------------------------------------------------------------- urgency
@pytest.mark.parametrize("line", [
    "你们再不管，我明天就去县政府楼顶跳下去。",
    "他们放话说今晚要来放火烧我家的房子。",
    "会计跟人说这两天就把账本烧掉，你们快点来。",
    "全村几十号人约好了明天早上去堵高速路口。",
    "听说他已经办好了护照，准备下个礼拜出国跑路。",
    "我真的活不下去了，钱要不回来我就喝农药。",
])
def test_urgent_phrasings(line):
    d = make_draft(turns=[GREETING, ca("我反映我们镇的副镇长潘建国，他把征地款扣了一大半。" + line)])
    assert d["urgent"] is True, line
    assert d["evidence"]["urgent"]


@pytest.mark.parametrize("line", [
    "我前几天看新闻，说外地有个干部自杀了，跟我们这个事没关系。",
    "我不会想不开的，也不会去闹事，就是希望你们查一查。",
    "去年他们村有人上访过，后来也就不了了之了。",
])
def test_not_urgent_uses_of_the_same_words(line):
    d = make_draft(turns=[GREETING, ca("我反映我们镇的副镇长潘建国，他把征地款扣了一大半。" + line)])
    assert d["urgent"] is False, line


def test_urgent_from_asr_text():
    d = make_draft(text="喂 纪委 的 同志 我 实在 是 没 办法 了 村主任 把 我家 的 地 强行 占 了 "
                   "我 现在 就 在 河边 你们 再 不 来 我 就 跳 河 了")
    assert d["urgent"] is True


# --------------------------------------------------------------------------- misc
def test_repeat_report_hint_and_evidence_spans_point_into_input():
    text = GREETING_ASR + "我 上次 打 过 电话 反映 过 我们 乡 的 乡长 苗国华 挪用 救灾款 到 现在 没有 回音"
    d = make_draft(text=text)
    assert d["duplicate_hint"] is True
    for field, spans in d["evidence"].items():
        for a, b in spans:
            assert 0 <= a <= b <= len(text)
    name_spans = [text[a:b] for a, b in d["evidence"]["subjects"]]
    assert "苗国华" in name_spans
    assert d["summary"].endswith("。") and "\n" not in d["summary"]


def test_turns_and_asr_agree_on_a_report():
    turns = [GREETING, ca("你好，我反映清水镇财政所所长胡德彬，他让他老婆在所里挂名领工资，三年拿了十五万多。"),
             op("请问您怎么称呼？"), ca("我叫万小军，电话一三六，一二三四，五六七八。")]
    asr = (GREETING_ASR + "你好 我 反映 清水镇 财政所 所长 胡德彬 他 让 他 老婆 在 所里 挂名 领 工资 三年 拿 了 十五 万多 "
           "请问 您 怎么 称呼 我 叫 万小军 电话 一三六 一二三四 五六七八")
    for d in (make_draft(turns=turns), make_draft(text=asr)):
        assert names(d) == ["胡德彬"]
        assert "财政所" in d["subjects"][0]["unit"]
        assert d["amount_yuan"] == 150_000
        assert d["reporter_name"] == "万小军" and d["real_name"] is True
        assert d["reporter_phone"] == "13612345678"
        assert "贪污挪用" in d["issue_types"]


def test_named_official_without_cue_words_is_still_a_report():
    d = make_draft(text=GREETING_ASR + "我 是 杨柳乡 大湾村 的 我 叫 常玉芬 我们 村 的 会计 尹德才 这 几年 把 村里 的 土地 流转费 "
                   "一直 压着 不 发 每户 少 了 两三千 块 我 电话 是 一五九 八七六 五四三二一")
    assert d["category"] == "检举控告"
    assert [(s["name"], s["unit"]) for s in d["subjects"]] == [("尹德才", "大湾村")]
    assert (d["reporter_name"], d["reporter_phone"], d["amount_yuan"]) == ("常玉芬", "15987654321", 2000)


def test_conditional_threat_is_not_urgent_and_bare_unit_kept():
    d = make_draft(text=GREETING_ASR + "我们 镇上 的 派出所 所长 龙海波 天天 跟 开 赌场 的 人 一起 喝酒 赌场 从来 没 被 查 过 "
                   "我 要是 说 了 名字 他们 会 弄死 我 的")
    assert d["urgent"] is False
    assert [(s["name"], s["unit"]) for s in d["subjects"]] == [("龙海波", "派出所")]
    assert "涉黑涉恶保护伞" in d["issue_types"]


def test_garbled_deputy_title_and_unit_not_miscorrected():
    d = make_draft(text="我 要 举抱 县 住建局 的 副举长 范志勇 他 老婆 开 了 一家 建材 公司 安置房 项目 都 指定 用 她 家 的 材料")
    assert [(s["name"], s["title"], s["unit"]) for s in d["subjects"]] == [("范志勇", "副局长", "县住建局")]
