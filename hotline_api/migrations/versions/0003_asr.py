"""transcription jobs and transcripts

Revision ID: 0003_asr
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import hotline_api.db.base


revision = '0003_asr'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'transcription_jobs',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('recording_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=24), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('claimed_by', sa.String(length=128), nullable=True),
        sa.Column('claim_token', sa.String(length=36), nullable=True),
        sa.Column('heartbeat_at', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.Column('lease_until', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.Column('progress', sa.Float(), nullable=True),
        sa.Column('model', sa.String(length=128), nullable=True),
        sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('updated_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('started_at', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.Column('finished_at', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_transcription_jobs_recording_id_recordings')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_transcription_jobs')),
        sa.UniqueConstraint('recording_id', name=op.f('uq_transcription_jobs_recording_id')),
    )
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_transcription_jobs_status_lease', ['status', 'lease_until'], unique=False)

    op.create_table(
        'transcripts',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('recording_id', sa.String(length=36), nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=True),
        sa.Column('model', sa.String(length=128), nullable=True),
        sa.Column('duration', sa.Float(), nullable=True),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_transcripts_recording_id_recordings')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_transcripts')),
        sa.UniqueConstraint('recording_id', name=op.f('uq_transcripts_recording_id')),
    )


def downgrade() -> None:
    op.drop_table('transcripts')
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_transcription_jobs_status_lease')
    op.drop_table('transcription_jobs')
