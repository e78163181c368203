"""Pure retention decisions: held or open-case audio is never due; what is due is always purged."""
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings as hsettings, strategies as st

from recordings.retention import RecordingFacts, RetentionPolicy, decide

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
days = st.integers(0, 3000)


@st.composite
def facts(draw):
    archived = draw(st.one_of(st.none(), days))
    case = draw(st.sampled_from([None, "c1", "c2"]))
    return RecordingFacts(
        recording_id="r", kind=draw(st.sampled_from(["call", "voicemail", "import"])),
        completed_at=T0 + timedelta(days=draw(days)), no_content=draw(st.booleans()),
        case_id=case, case_archived_at=(T0 + timedelta(days=archived)) if case and archived is not None else None,
        held=draw(st.booleans()),
    )


policies = st.builds(RetentionPolicy, no_content_days=st.one_of(st.none(), st.integers(0, 400)),
                     voicemail_no_case_days=st.one_of(st.none(), st.integers(0, 800)),
                     case_archived_days=st.one_of(st.none(), st.integers(0, 2000)),
                     other_days=st.one_of(st.none(), st.integers(0, 2000)))


@hsettings(max_examples=1000, deadline=None)
@given(f=facts(), p=policies, now_days=st.integers(0, 6000))
def test_decisions(f, p, now_days):
    now = T0 + timedelta(days=now_days)
    d = decide(f, p, now)
    if f.held:
        assert not d.purge
    if f.case_id is not None and f.case_archived_at is None:
        assert not d.purge
    if f.case_id is not None and f.case_archived_at is not None and not f.held:
        due = p.case_archived_days is not None and now >= max(f.case_archived_at, f.completed_at) + timedelta(days=p.case_archived_days)
        assert d.purge == due, d
    if not f.held and f.case_id is None:
        days_ = p.no_content_days if f.no_content else (p.voicemail_no_case_days if f.kind == "voicemail" else p.other_days)
        due = days_ is not None and now >= f.completed_at + timedelta(days=days_)
        assert d.purge == due, d
    if d.purge:
        assert d.due_at is not None and d.due_at <= now and d.reason


def test_defaults():
    p = RetentionPolicy()
    f = RecordingFacts("r", "call", T0, no_content=True)
    assert not decide(f, p, T0 + timedelta(days=179)).purge
    assert decide(f, p, T0 + timedelta(days=180)).purge
    v = RecordingFacts("r", "voicemail", T0)
    assert not decide(v, p, T0 + timedelta(days=364)).purge and decide(v, p, T0 + timedelta(days=365)).purge
    c = RecordingFacts("r", "call", T0, case_id="c", case_archived_at=T0 + timedelta(days=10))
    assert not decide(c, p, T0 + timedelta(days=10 + 5 * 365 - 1)).purge
    assert decide(c, p, T0 + timedelta(days=10 + 5 * 365)).purge
    assert not decide(RecordingFacts("r", "call", T0), p, T0 + timedelta(days=10000)).purge  # unorganized call kept
