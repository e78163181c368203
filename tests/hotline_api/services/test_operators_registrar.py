"""Operator SIP credentials from the DB reach a running kamailio registrar (RPC, no restart), and a
softphone registers with them (digest auth against the HA1)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import hotline_api.models.governance  # noqa: F401
import hotline_api.models.operators  # noqa: F401
from hotline_api.db.session import session_factory
from hotline_api.services import operators as ops
from hotline_api.services.auth import create_user
from hotline_api.sip_routing import RegistrarSync, registrar_credentials
from tests.telephony.sipp_util import free_port, wait_for
from tests.telephony.test_queue_util import operators  # noqa: F401 - fixture

pytestmark = [pytest.mark.sip, pytest.mark.skipif(not shutil.which("kamailio"), reason="kamailio not installed")]


@pytest.fixture
def kamailio():
    from telephony.kamailio import Backend, KamailioConfig, KamailioProcess
    from telephony.routing import registrar_extension

    run = Path(tempfile.mkdtemp(prefix="kr", dir="/tmp"))
    # no worker needed here: one (silent) backend, since the front door requires one
    cfg = KamailioConfig(run_dir=run / "run", listen_port=free_port(), extensions=[registrar_extension("12388")],
                         backends=[Backend("127.0.0.1", free_port(), legs=4, name="w0")])
    kam = KamailioProcess(cfg)
    kam.start()
    try:
        yield kam
    finally:
        kam.stop()
        shutil.rmtree(run, ignore_errors=True)


def test_db_credentials_synced_to_kamailio_and_used_for_register(db, kamailio, operators):
    with db() as s:
        u, _ = create_user(s, "dora", "operator", "correct-horse-battery")
        ops.ensure_operator(s, u, sip_username="dora", sip_password="first-secret", realm="12388",
                            contacts=[{"kind": "registered"}])
        s.commit()
        uid = u.id
    sync = RegistrarSync(db, kamailio.rpc)
    assert sync.sync(full=True) == 1
    assert ops.digest_ha1("dora", "12388", "first-secret") in kamailio.rpc("htable.get", "subs", "dora")
    port = kamailio.cfg.listen_port
    aor = f"sip:dora@127.0.0.1:{port}"
    ok = operators(register=aor, user="dora", password="first-secret")
    wait_for(lambda: any(e["code"] == 200 for e in ok.events("registered")), 15, what="registered")
    assert "dora" in kamailio.rpc("ul.dump")
    # the admin changes the password: pushed without restart; the old one no longer works
    with db() as s:
        ops.ensure_operator(s, ops_user(s, uid), sip_password="second-secret", realm="12388")
        s.commit()
    assert sync.sync() == 1 and sync.sync() == 0
    old = operators(register=aor, user="dora", password="first-secret")
    wait_for(lambda: old.events("registered"), 15, what="old password answered")
    assert all(e["code"] != 200 for e in old.events("registered"))
    new = operators(register=aor, user="dora", password="second-secret")
    wait_for(lambda: any(e["code"] == 200 for e in new.events("registered")), 15, what="new password")
    assert registrar_credentials(db) == {"dora": ops.digest_ha1("dora", "12388", "second-secret")}


def ops_user(s, uid):
    from hotline_api.models.governance import User

    return s.get(User, uid)
