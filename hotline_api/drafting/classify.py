"""Category, issue types, urgency, routing for out-of-scope matters, repeat-report hint and the
one-sentence summary. General cue rules only."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from hotline_api.drafting import lexicon as L

CATEGORIES = ("检举控告", "申诉", "批评建议", "业务范围外", "咨询", "无实质内容")


@dataclass
class Hit:
    label: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    score: float = 0.0


def _find_all(text: str, cue: str, base: int = 0) -> list[tuple[int, int]]:
    if cue.startswith("re:"):
        return [(base + m.start(), base + m.end()) for m in re.finditer(cue[3:], text)]
    out = []
    i = text.find(cue)
    while i != -1:
        out.append((base + i, base + i + len(cue)))
        i = text.find(cue, i + 1)
    return out


def find_in_ranges(s: str, ranges: list[tuple[int, int]], cues) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for a, b in ranges:
        seg = s[a:b]
        for c in cues:
            spans.extend(_find_all(seg, c, a))
    return sorted(set(spans))


# --------------------------------------------------------------------------- urgency
# (pattern, kind). Patterns run on the reporter's speech.
URGENT_PATTERNS: list[tuple[str, str]] = [
    (r"不(想)?活了|不想活|活不下去|活着没意思|一死了之|死给[你他]们看|寻死|轻生|自杀|自尽|上吊|跳楼|跳河|割腕|"
     r"(喝|拿)[一瓶]*(农药|药水|百草枯|敌敌畏)|同归于尽|去死|(楼顶|桥上|楼上)[^，。]{0,3}跳|跳下去|跳江|跳水库|卧轨|撞死在", "self_harm"),
    (r"(要|来|去|就)(砸|烧|炸|杀|砍|捅|弄死|打死|打断)|打断[我你他她]的?腿|(杀|砍|弄死|打死)[了]?[我你他她]|"
     r"放火|炸[了掉]|报复我|威胁我|恐吓|不让我活|人身安全.{0,4}(威胁|危险)|上门(闹|砸)|拿刀|要我的命", "violence"),
    (r"(堵|拦)[了住]?[^，。]{0,4}(路|道|路口|大门|政府)|把.{0,4}(路|道)给?堵|几百(号)?人|上百人|几十(号)?人.{0,10}(去|要)|"
     r"(集体|一起|组织).{0,4}(上访|去闹|静坐|游行)|拉横幅|围堵|冲击|聚集|静坐|闹事|出大事", "mass_incident"),
    (r"(销毁|烧掉?|毁掉?|删掉?|转移|藏起来).{0,4}(证据|账本|账目|材料|凭证|资料|监控|资产|钱)|"
     r"(证据|账本|账目|凭证|票据|监控|材料)[^，。]{0,4}(销毁|烧|毁|删|转移|藏)|"
     r"(准备|马上|明天|今晚|这两天|要)(跑路|出国|外逃|潜逃|逃跑)|(跑路|出国|外逃|潜逃)", "evidence_or_flight"),
]
# Context that makes a match not about the caller's situation (news, hearsay, negation).
NON_URGENT_BEFORE = re.compile(
    r"(新闻|报道|电视|报纸|网上看|电影|小说|听说有个|以前有个|别的地方|外地有个|不会|不要|别|千万不要|没有|并不|不是要|不至于|"
    r"不敢|怕他|防止|以免|避免|是不是)[^，。！？]{0,8}$")
IMMINENT = re.compile(r"(今天|今晚|晚上|明天|明早|马上|立刻|现在|准备|要|就要|打算|约好|正在|已经约|快要|等下|下午|这两天|这几天|赶紧|快点|随时)")


def urgency(s: str, ranges: list[tuple[int, int]]) -> tuple[bool, list[tuple[int, int]], list[str], float]:
    spans: list[tuple[int, int]] = []
    kinds: list[str] = []
    for a, b in ranges:
        seg = s[a:b]
        for pat, kind in URGENT_PATTERNS:
            for m in re.finditer(pat, seg):
                before = seg[max(0, m.start() - 14):m.start()]
                if NON_URGENT_BEFORE.search(before):
                    continue
                clause_start = max(seg.rfind(c, 0, m.start()) for c in "，。！？\n")
                clause = seg[clause_start + 1:m.end() + 6]
                wider = seg[max(0, m.start() - 40):m.end() + 10]
                if kind == "self_harm":
                    # about the caller (or someone they speak for), not a story
                    if re.search(r"(新闻|报道|电视|听说|别人家|有个人)", wider) and not re.search(r"我(就|要|也|真|都)", wider):
                        continue
                if kind in ("mass_incident", "evidence_or_flight"):
                    if m.group(0) in ("出大事",) and not IMMINENT.search(wider):
                        continue
                    if not IMMINENT.search(wider):
                        continue
                if kind == "violence":
                    if re.search(r"(要是|如果|万一|假如|否则)", clause[:max(0, m.start() - clause_start - 1) + 1] or clause):
                        continue
                    if re.search(r"(以前|去年|前年|小时候|那次)", clause) and not IMMINENT.search(clause):
                        continue
                spans.append((a + m.start(), a + m.end()))
                kinds.append(kind)
    kinds = sorted(set(kinds))
    conf = 0.9 if len(spans) >= 2 else (0.75 if spans else 0.8)
    return bool(spans), spans, kinds, conf


# --------------------------------------------------------------------------- category
REPORTING = re.compile(r"举报|反映|反应|检举|控告|投诉|揭发")
SMALL_TALK = re.compile(r"打错了|打错电话|拨错|信号不好|听不清|听不到|喂喂|等下再打|不好意思")
APPEAL = re.compile(r"申诉|(处分|处理|党纪|政务处分|开除)[^。！？]{0,20}(不服|不公平|太重|冤枉|不对|错了)|不服[^。！？]{0,6}(处分|处理)|"
                    r"(给|对)我的处分|撤职处分|给了我[^。]{0,4}处分")
SUGGEST = re.compile(r"提(个|点|些)?(意见|建议)|我(有个|想提个?)?建议|建议(你们|纪委|组织)|批评一下|不是举报")
CONSULT = re.compile(r"咨询|想问一下|想问问|我想问|请问一下|查一下|进度|什么时候给我|怎么(举报|反映|提交|办)|能不能作为证据|"
                     r"在哪里|几点上班|需要准备|要不要|回复|回话|答复|一点消息都没有")
OUT_OF_SCOPE_OPERATOR = re.compile(r"不属于[^。]{0,12}(受理|范围|管辖)|不在我们[^。]{0,6}受理|不归我们管|不是我们受理|不属于纪检")
PRIVATE_MATTERS = re.compile(r"纠纷|保健品|三无产品|推销|诈骗|骗了|被骗|骗走|工伤|欠薪|拖欠工资|劳动争议|社保|老板不|私人的|"
                             r"邻居|兄弟|弟弟|哥哥|离婚|赡养|继承|打架|被人打|物业|房东|医疗纠纷|交通事故|假货|质量问题|网购|消费")
# A public official or public body being accused
OFFICIAL_HINT = re.compile(r"(书记|主任|局长|镇长|乡长|县长|所长|站长|校长|院长|股长|科长|队长|民警|警察|干部|公职人员|村委|政府|"
                           r"派出所|工作人员|城管|执法|会计|主席)")


def categorize(s: str, ranges: list[tuple[int, int]], full: str, subjects, allegation_spans, caller_len: int,
               issue_hits: list[Hit]) -> tuple[str, float, list[tuple[int, int]]]:
    caller = "".join(s[a:b] for a, b in ranges)
    named = [x for x in subjects if x.name]
    titled = [x for x in subjects if x.title]
    substantive = re.sub(r"[，。！？、\n…]", "", caller)
    ev: list[tuple[int, int]] = []

    def spans_of(rx) -> list[tuple[int, int]]:
        out = []
        for a, b in ranges:
            out.extend((a + m.start(), a + m.end()) for m in rx.finditer(s[a:b]))
        return out

    small = spans_of(SMALL_TALK)
    if len(substantive) < 12 or (small and len(substantive) < 60 and not allegation_spans and not named):
        return "无实质内容", 0.8 if len(substantive) < 12 else 0.6, small
    appeal = spans_of(APPEAL)
    if appeal and not (named and len(allegation_spans) >= 4 and len(appeal) < 1):
        return "申诉", 0.8, appeal
    out_op = [(m.start(), m.end()) for m in OUT_OF_SCOPE_OPERATOR.finditer(full)]
    private = spans_of(PRIVATE_MATTERS)
    suggest = spans_of(SUGGEST)
    consult = spans_of(CONSULT)
    strong_issue = [h for h in issue_hits if h.label != "其他"]
    reporting = spans_of(REPORTING)
    if named and (allegation_spans or strong_issue or reporting):
        return "检举控告", 0.85 if len(allegation_spans) >= 2 else 0.7, (allegation_spans or reporting)[:5]
    if suggest and not named:
        return "批评建议", 0.75, suggest
    if out_op and not named:
        return "业务范围外", 0.8, out_op + private[:3]
    if titled and len(allegation_spans) + len(strong_issue) >= 2 and not (private and not allegation_spans):
        return "检举控告", 0.65, allegation_spans[:5]
    if private and not titled and len(allegation_spans) <= 2:
        return "业务范围外", 0.6, private[:5]
    if consult and (len(allegation_spans) <= 3 or not titled):
        return "咨询", 0.65, consult[:5]
    if allegation_spans or strong_issue:
        return "检举控告", 0.55, allegation_spans[:5]
    if reporting and titled:
        return "检举控告", 0.4, reporting[:3]
    if named and len(substantive) >= 30:
        # a named official in a substantive call: most likely a report, staff confirm
        return "检举控告", 0.35, []
    return "咨询" if consult else "无实质内容", 0.4, consult[:3]


def issue_types(s: str, ranges: list[tuple[int, int]]) -> list[Hit]:
    hits: list[Hit] = []
    for label, cues in L.ISSUE_RULES.items():
        spans = find_in_ranges(s, ranges, cues)
        if spans:
            hits.append(Hit(label, spans, score=len(spans)))
    return hits


def select_issue_types(hits: list[Hit], category: str) -> list[str]:
    if category not in ("检举控告", "批评建议"):
        return []
    if category == "批评建议":
        return [h.label for h in hits if h.label == "形式主义官僚主义"]
    scored = sorted(hits, key=lambda h: -h.score)
    labels = [h.label for h in scored if h.score >= 1]
    if "其他" in labels and len(labels) > 1 and not any(h.label == "其他" and h.score >= 2 for h in hits):
        labels.remove("其他")
    return labels[:3]


# --------------------------------------------------------------------------- routing
ROUTES: list[tuple[str, str, str]] = [
    (r"工伤|欠薪|拖欠工资|欠[^，。]{0,8}(工资|工钱)|包工头|劳动争议|劳动合同|社保|加班费|辞退|临时工", "labour",
     "人力资源和社会保障部门（劳动保障监察、劳动人事争议仲裁委员会，12333）"),
    (r"保健品|三无产品|假货|假药|质量问题|消费|网购|推销|虚假宣传|价格欺诈", "market_regulation",
     "市场监督管理部门（12315）；涉及诈骗的向公安机关报案"),
    (r"诈骗|被骗|骗了|骗走|盗窃|偷|被人打|打架|殴打|威胁|敲诈", "police", "公安机关（110 或当地派出所）"),
    (r"承包|土地|责任田|宅基地", "land_arbitration", "农村土地承包仲裁机构或人民法院"),
    (r"纠纷|离婚|继承|赡养|借款|欠钱|合同|起诉|判决|执行", "court", "人民法院（诉讼）或人民调解委员会"),
    (r"物业|噪音|环境|路灯|供水|停电|政务服务|办事", "hotline_12345", "12345 政务服务便民热线"),
]


def routing(s: str, ranges: list[tuple[int, int]], full: str) -> dict:
    caller = "".join(s[a:b] for a, b in ranges)
    for rx, key, agency in ROUTES:
        if re.search(rx, caller):
            return {"agency": key, "suggestion": agency}
    return {"agency": "petition_bureau", "suggestion": "信访部门（信访局）"}


# --------------------------------------------------------------------------- repeats
REPEAT = re.compile(r"之前(打|举报|反映|来电|打过)|以前(打|举报|反映)过|上次(打|举报|反映|来电)|再次(反映|举报)|又(一次)?(打|来)|"
                    r"已经(打|反映|举报)过|打过一回|反映过好几次|还记得|第二次(打|反映)|重复(反映|举报)")


def duplicate_hint(s: str, ranges: list[tuple[int, int]]) -> tuple[bool, list[tuple[int, int]]]:
    spans = find_in_ranges(s, ranges, [f"re:{REPEAT.pattern}"])
    return bool(spans), spans


# --------------------------------------------------------------------------- summary
def summary(category: str, subjects, places, issue_labels: list[str], amount: int | None, real_name: bool,
            route: dict | None) -> str:
    """One neutral written-Chinese sentence; never names the reporter."""
    who = "来电人实名" if real_name else "来电人"
    if category == "无实质内容":
        return "来电未说明具体事项，无实质内容。"
    place = places[0] if places else ""
    amt = f"，涉及金额约{_yuan(amount)}" if amount else ""
    if category == "业务范围外":
        where = f"在{place}" if place else ""
        return f"{who}反映{where}的个人事项，不属于纪检监察机关受理范围，建议向{(route or {}).get('suggestion', '有关部门')}反映{amt}。"
    if category == "咨询":
        return f"{who}来电咨询有关举报受理和办理事项。"
    if category == "申诉":
        return f"{who}对本人所受处分（处理）不服，提出申诉{amt}。"
    if category == "批评建议":
        what = "、".join(issue_labels) if issue_labels else "工作作风"
        return f"{who}对有关单位{what}方面的问题提出批评建议。"
    parts = []
    for sj in subjects[:3]:
        p = f"{sj.unit}{sj.title}{sj.name}"
        parts.append(p or "有关人员")
    target = "、".join(parts) if parts else (f"{place}有关公职人员" if place else "有关公职人员")
    what = "、".join(issue_labels) if issue_labels else "违纪违法"
    return f"{who}反映{target}涉嫌{what}等问题{amt}。"


def _yuan(v: int) -> str:
    if v >= 10000 and v % 10000 == 0:
        return f"{v // 10000}万元"
    if v >= 10000:
        return f"{v / 10000:.1f}万元".replace(".0万", "万")
    return f"{v}元"
