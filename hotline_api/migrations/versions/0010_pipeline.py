"""durable recording pipeline: stage columns on recordings (hotline_api.services.pipeline)

Revision ID: 0010_pipeline
Revises: 0009_callbacks

Existing rows get the stage their rows already prove: a transcription job → queued, a review
assignment → assigned, a stored blob → stored, a finished recording without a blob → completed
(the pipeline picks those up), a failed recording → failed.
"""
from alembic import op
import sqlalchemy as sa
import hotline_api.db.base


revision = '0010_pipeline'
down_revision = '0009_callbacks'
branch_labels = None
depends_on = None

def _columns() -> list[sa.Column]:
    return [
    sa.Column('stage', sa.String(length=16), nullable=False, server_default='recording'),
    sa.Column('stage_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('stage_attempts', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('stage_error', sa.Text(), nullable=True),
    sa.Column('stage_next_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('claim_token', sa.String(length=36), nullable=True),
    sa.Column('claim_until', hotline_api.db.base.UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        for col in _columns():
            batch.add_column(col)
    op.execute("UPDATE recordings SET stage = 'failed' WHERE status = 'failed'")
    op.execute("UPDATE recordings SET stage = 'completed' WHERE status IN ('complete', 'recovered', 'empty')")
    op.execute("UPDATE recordings SET stage = 'stored' WHERE id IN (SELECT recording_id FROM recording_blobs)")
    op.execute("UPDATE recordings SET stage = 'assigned' WHERE id IN (SELECT recording_id FROM review_assignments)")
    op.execute("UPDATE recordings SET stage = 'queued' WHERE id IN (SELECT recording_id FROM transcription_jobs)"
               " OR status IN ('purged') OR (kind = 'import' AND stage <> 'recording')")
    op.execute("UPDATE recordings SET stage_at = COALESCE(completed_at, created_at)")
    op.create_index('ix_recordings_stage', 'recordings', ['stage', 'stage_next_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_recordings_stage', table_name='recordings')
    with op.batch_alter_table('recordings') as batch:
        for col in reversed(_columns()):
            batch.drop_column(col.name)
