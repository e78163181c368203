"""per-call content keys (report content shredded with its recording); draft subjects encrypted

Revision ID: 0011_content_keys
Revises: 0010_pipeline

``content_keys`` holds one random key per call, wrapped by the master key
(``hotline_api.db.content_keys``). ``draft_subjects.name/title/unit`` become encrypted text (Text:
a ciphertext does not fit the old VARCHAR lengths on PostgreSQL). Values stored in clear before
this release (subjects, ``cases.result``, ``case_events.detail``, ``call_events.data``) are
encrypted by ``hotline db upgrade`` right after the schema step (``services.content``), since a
migration holds no key. ``crypto_state.field_kcv`` records which field key the columns are under,
so an interrupted ``hotline keys rotate --field-key`` is finished with the right one.
``audit_entries.mac`` seals each new audit entry under the chain key (``keys/audit_chain.key``).
"""
from alembic import op
import sqlalchemy as sa
import hotline_api.db.base


revision = '0011_content_keys'
down_revision = '0010_pipeline'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'content_keys',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('call_id', sa.String(length=36), nullable=False),
        sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
        sa.Column('master_kcv', sa.String(length=32), nullable=True),
        sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
        sa.Column('destroyed_at', hotline_api.db.base.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_content_keys')),
        sa.UniqueConstraint('call_id', name=op.f('uq_content_keys_call_id')),
    )
    with op.batch_alter_table('draft_subjects', schema=None) as batch_op:
        for col in ('name', 'title', 'unit'):
            batch_op.alter_column(col, existing_type=sa.String(length=128 if col == 'unit' else 32),
                                  type_=sa.Text(), existing_nullable=False)
    with op.batch_alter_table('crypto_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('field_kcv', sa.String(length=32), nullable=True))
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:  # the per-address login throttle
        batch_op.create_index('ix_login_attempts_ip_at', ['ip', 'at'], unique=False)
    # plain ADD COLUMN (no table rebuild on SQLite: the append-only triggers stay)
    op.add_column('audit_entries', sa.Column('mac', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_ip_at')
    op.drop_column('audit_entries', 'mac')
    with op.batch_alter_table('crypto_state', schema=None) as batch_op:
        batch_op.drop_column('field_kcv')
    with op.batch_alter_table('draft_subjects', schema=None) as batch_op:
        for col in ('name', 'title', 'unit'):
            batch_op.alter_column(col, existing_type=sa.Text(), type_=sa.String(length=128 if col == 'unit' else 32),
                                  existing_nullable=False)
    op.drop_table('content_keys')
