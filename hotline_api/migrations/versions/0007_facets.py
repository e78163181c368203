"""merge the parallel branches; case_facets (clear issue types/places of encrypted case documents);
index cases.received_on (statistics periods)

Revision ID: 0007_facets
Revises: 0003_asr, 0004_cases, 0006_ops (which follows 0005_gov)
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0007_facets"
down_revision = ("0003_asr", "0004_cases", "0006_ops")  # 0006_ops follows 0005_gov
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_facets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_facets_case_id_cases"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_facets")),
    )
    with op.batch_alter_table("case_facets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_facets_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_case_facets_facet_value", ["facet", "value"], unique=False)
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_received_on"), ["received_on"], unique=False)
    # Back-fill from case documents still stored in clear (documents are encrypted from now on).
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, fields_json FROM cases")).fetchall()
    for case_id, doc in rows:
        try:
            data = json.loads(doc or "{}")
        except ValueError:
            continue  # already encrypted: written by a version that maintains facets itself
        for key in ("issue_types", "places"):
            for v in dict.fromkeys(data.get(key) or []):
                if isinstance(v, str) and v.strip():
                    conn.execute(sa.text("INSERT INTO case_facets (case_id, facet, value) VALUES (:c, :f, :v)"),
                                 {"c": case_id, "f": key, "v": v.strip()[:128]})


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_received_on"))
    with op.batch_alter_table("case_facets", schema=None) as batch_op:
        batch_op.drop_index("ix_case_facets_facet_value")
        batch_op.drop_index(batch_op.f("ix_case_facets_case_id"))
    op.drop_table("case_facets")
