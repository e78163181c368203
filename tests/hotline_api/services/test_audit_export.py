"""Export requests: a second supervisor approves; self-approval is refused by the rule and by the DB."""
from datetime import datetime, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from hotline_api.models.governance import ExportRequest, SelfApprovalError, approve_export
from hotline_api.services import auth

PW = "correct horse battery"


def test_export_needs_a_second_supervisor(settings, db):
    now = datetime(2026, 5, 1, tzinfo=timezone.utc)
    with db() as s:
        a, _ = auth.create_user(s, "sup_a", "supervisor", PW)
        b, _ = auth.create_user(s, "sup_b", "supervisor", PW)
        m, _ = auth.create_user(s, "mgr_c", "recording_manager", PW)
        req = ExportRequest(requester_id=a.id, reason="移送司法机关", object_ids_json='["x"]')
        s.add(req)
        s.commit()
        with pytest.raises(SelfApprovalError, match="own requester"):
            approve_export(req, a, now)
        with pytest.raises(SelfApprovalError, match="supervisor"):
            approve_export(req, m, now)
        assert req.status == "pending" and req.approver_id is None
        approve_export(req, b, now)
        s.commit()
        assert req.status == "approved" and req.expires_at > now
        with pytest.raises(SelfApprovalError, match="not pending"):
            approve_export(req, b, now)
        # the database refuses a self-approval written past the rule
        bad = ExportRequest(requester_id=a.id, reason="x", approver_id=a.id, status="approved")
        s.add(bad)
        with pytest.raises(IntegrityError):
            s.commit()
