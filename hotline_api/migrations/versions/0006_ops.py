"""operators, working hours, open overrides, live call events

Revision ID: 0006_ops
Revises: 0005_gov
Depends on: 0005_gov (operators.user_id references users)
"""
from alembic import op
import sqlalchemy as sa
import hotline_api.db.base


revision = '0006_ops'
down_revision = '0005_gov'  # operators reference users
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'operators',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('state_reason', sa.String(length=255), nullable=True),
        sa.Column('state_since', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('last_call_ended_at', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.Column('wrap_up_until', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.Column('current_call_id', sa.String(length=36), nullable=True),
        sa.Column('reserved_call_id', sa.String(length=36), nullable=True),
        sa.Column('reserved_until', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.Column('sip_username', sa.String(length=64), nullable=True),
        sa.Column('sip_realm', sa.String(length=128), nullable=True),
        sa.Column('sip_ha1', sa.String(length=64), nullable=True),
        sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint("state IN ('available','on_call','wrap_up','paused','offline')",
                           name=op.f('ck_operators_state')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_operators_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operators')),
        sa.UniqueConstraint('user_id', name=op.f('uq_operators_user_id')),
        sa.UniqueConstraint('sip_username', name=op.f('uq_operators_sip_username')),
    )
    op.create_index('ix_operators_state', 'operators', ['state'], unique=False)
    op.create_table(
        'operator_contacts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('operator_id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('uri', sa.String(length=255), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.CheckConstraint("kind IN ('static','registered')", name=op.f('ck_operator_contacts_kind')),
        sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], ondelete='CASCADE',
                                name=op.f('fk_operator_contacts_operator_id_operators')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_contacts')),
    )
    op.create_index(op.f('ix_operator_contacts_operator_id'), 'operator_contacts', ['operator_id'], unique=False)
    op.create_table(
        'working_hours',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('weekday', sa.Integer(), nullable=False),
        sa.Column('start_time', sa.String(length=5), nullable=False),
        sa.Column('end_time', sa.String(length=5), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_working_hours_weekday')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_working_hours')),
    )
    op.create_table(
        'open_overrides',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('is_open', sa.Boolean(), nullable=False),
        sa.Column('start_time', sa.String(length=5), nullable=True),
        sa.Column('end_time', sa.String(length=5), nullable=True),
        sa.Column('note', sa.String(length=255), nullable=True),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_open_overrides')),
        sa.UniqueConstraint('day', name=op.f('uq_open_overrides_day')),
    )
    op.create_table(
        'call_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('call_id', sa.String(length=36), nullable=False),
        sa.Column('operator_id', sa.String(length=36), nullable=True),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_call_events')),
    )
    op.create_index(op.f('ix_call_events_call_id'), 'call_events', ['call_id'], unique=False)
    op.create_index('ix_call_events_operator_id', 'call_events', ['operator_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_call_events_operator_id', table_name='call_events')
    op.drop_index(op.f('ix_call_events_call_id'), table_name='call_events')
    op.drop_table('call_events')
    op.drop_table('open_overrides')
    op.drop_table('working_hours')
    op.drop_index(op.f('ix_operator_contacts_operator_id'), table_name='operator_contacts')
    op.drop_table('operator_contacts')
    op.drop_index('ix_operators_state', table_name='operators')
    op.drop_table('operators')
