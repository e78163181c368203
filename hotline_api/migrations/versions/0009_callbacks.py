"""callback tasks (hotline_api.models.callbacks): callers who asked to be called back

Revision ID: 0009_callbacks
Revises: 0008_stats
"""
from alembic import op
import sqlalchemy as sa
import hotline_api.db.base


revision = '0009_callbacks'
down_revision = '0008_stats'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'callback_tasks',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('call_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('due_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('updated_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('handled_by', sa.String(length=36), nullable=True),
        sa.Column('last_outcome', sa.String(length=16), nullable=True),
        sa.Column('outcome_note', sa.Text(), nullable=True),  # EncryptedText: ciphertext
        sa.Column('last_attempt_at', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_callback_tasks_call_id_calls')),
        sa.ForeignKeyConstraint(['handled_by'], ['users.id'], name=op.f('fk_callback_tasks_handled_by_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_tasks')),
        sa.UniqueConstraint('call_id', name=op.f('uq_callback_tasks_call_id')),
    )
    op.create_index('ix_callback_tasks_status_due', 'callback_tasks', ['status', 'due_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_callback_tasks_status_due', table_name='callback_tasks')
    op.drop_table('callback_tasks')
