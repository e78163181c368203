from recordings.audit_chain import GENESIS, entry_hash, verify_chain


def _chain(n):
    out, prev = [], GENESIS
    for i in range(1, n + 1):
        e = {"seq": i, "at": f"2026-01-01T00:00:{i:02d}", "actor_id": None, "actor_name": "u", "action": "x",
             "object_type": "recording", "object_id": str(i), "ip": "127.0.0.1", "reason": None,
             "detail": {"range": [0, i]}, "prev_hash": prev}
        e["hash"] = entry_hash(e)
        prev = e["hash"]
        out.append(e)
    return out


def test_untouched_chain_verifies():
    r = verify_chain(_chain(10))
    assert r.ok and r.count == 10 and r.head_seq == 10


def test_edit_delete_swap_are_named():
    c = _chain(10)
    c[4]["detail"] = {"range": [0, 999]}
    r = verify_chain(c)
    assert not r.ok and r.problem.seq == 5 and "edited" in r.problem.reason

    c = _chain(10)
    del c[6]
    r = verify_chain(c)
    assert not r.ok and r.problem.seq == 8 and r.count == 6

    c = _chain(10)
    c[2], c[3] = c[3], c[2]
    r = verify_chain(c)
    assert not r.ok and r.problem.seq == 4 and r.problem.position == 3

    c = _chain(3)
    c[0]["prev_hash"] = "f" * 64
    assert verify_chain(c).problem.seq == 1
