"""covering indexes for the statistics dashboard (hotline_api.models.stats)

Revision ID: 0008_stats
Revises: 0007_facets
"""
from alembic import op

revision = "0008_stats"
down_revision = "0007_facets"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_calls_status_created", "calls", ["status", "created_at"]),
    ("ix_cases_stats", "cases", ["received_on", "category", "status", "real_name", "urgent", "draft_id", "id"]),
    ("ix_drafts_duplicate", "drafts", ["duplicate_hint", "id"]),
    ("ix_drafts_received", "drafts", ["received_at", "status"]),
    ("ix_case_facets_stats", "case_facets", ["case_id", "facet", "value"]),
    ("ix_review_assignments_stats", "review_assignments", ["assigned_at", "manager_id", "completed_at", "due_at"]),
]


def upgrade() -> None:
    for name, table, cols in INDEXES:
        op.create_index(name, table, cols, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
