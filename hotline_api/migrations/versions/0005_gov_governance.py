"""governance: users, sessions, audit log, recording keys, review, legal holds, retention, export

Revision ID: 0005_gov
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import hotline_api.db.base


revision = '0005_gov'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('actor_id', sa.String(length=36), nullable=True),
    sa.Column('actor_name', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=True),
    sa.Column('object_id', sa.String(length=64), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_entries')),
    sa.UniqueConstraint('prev_hash', name=op.f('uq_audit_entries_prev_hash'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entries_action'), ['action'], unique=False)
        batch_op.create_index('ix_audit_entries_at', ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entries_object_id'), ['object_id'], unique=False)

    op.create_table('crypto_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('master_kcv', sa.String(length=32), nullable=False),
    sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('rotated_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crypto_state'))
    )
    op.create_table('legal_holds',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('target_type', sa.String(length=16), nullable=False),
    sa.Column('target_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('released_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('released_by', sa.String(length=36), nullable=True),
    sa.CheckConstraint("target_type IN ('recording','case')", name=op.f('ck_legal_holds_target_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_legal_holds'))
    )
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_legal_holds_target_id'), ['target_id'], unique=False)

    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_user_at', ['username', 'at'], unique=False)

    op.create_table('purge_stubs',
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('plain_size', sa.Integer(), nullable=True),
    sa.Column('recorded_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('purged_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('purged_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('recording_id', name=op.f('pk_purge_stubs'))
    )
    op.create_table('retention_policies',
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('days', sa.Integer(), nullable=True),
    sa.Column('updated_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('kind', name=op.f('pk_retention_policies'))
    )
    op.create_table('users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('permissions', sa.Text(), nullable=False),
    sa.Column('unit', sa.String(length=128), nullable=True),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('token_version', sa.Integer(), nullable=False),
    sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('password_changed_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('last_login_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.CheckConstraint("role IN ('operator','recording_manager','supervisor','auditor','admin')", name=op.f('ck_users_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('duty_roster',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('day', sa.Date(), nullable=True),
    sa.Column('shift', sa.String(length=32), nullable=False),
    sa.Column('start_time', sa.String(length=5), nullable=False),
    sa.Column('end_time', sa.String(length=5), nullable=False),
    sa.Column('manager_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['manager_id'], ['users.id'], name=op.f('fk_duty_roster_manager_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_duty_roster')),
    sa.UniqueConstraint('day', 'shift', name='uq_duty_roster_day_shift')
    )
    with op.batch_alter_table('duty_roster', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duty_roster_day'), ['day'], unique=False)

    op.create_table('export_requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('requester_id', sa.String(length=36), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('object_type', sa.String(length=16), nullable=False),
    sa.Column('object_ids', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('approver_id', sa.String(length=36), nullable=True),
    sa.Column('decided_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('expires_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('bundle_rel_path', sa.String(length=255), nullable=True),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=True),
    sa.CheckConstraint('approver_id IS NULL OR approver_id <> requester_id', name=op.f('ck_export_requests_not_self_approved')),
    sa.ForeignKeyConstraint(['approver_id'], ['users.id'], name=op.f('fk_export_requests_approver_id_users')),
    sa.ForeignKeyConstraint(['requester_id'], ['users.id'], name=op.f('fk_export_requests_requester_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_requests'))
    )
    op.create_table('web_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('expires_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_web_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions'))
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('recording_blobs',
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('rel_path', sa.String(length=255), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
    sa.Column('master_kcv', sa.String(length=32), nullable=True),
    sa.Column('chunk_size', sa.Integer(), nullable=False),
    sa.Column('plain_size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('data_offset', sa.Integer(), nullable=False),
    sa.Column('data_size', sa.Integer(), nullable=False),
    sa.Column('stored_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('verified_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('destroyed_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_recording_blobs_recording_id_recordings')),
    sa.PrimaryKeyConstraint('recording_id', name=op.f('pk_recording_blobs'))
    )
    op.create_table('review_assignments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('manager_id', sa.String(length=36), nullable=True),
    sa.Column('assigned_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('due_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('due_provisional', sa.Boolean(), nullable=False),
    sa.Column('served_ranges', sa.Text(), nullable=False),
    sa.Column('coverage', sa.Float(), nullable=False),
    sa.Column('listened_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('stored_confirmed_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('stored_by', sa.String(length=36), nullable=True),
    sa.Column('organized_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('organized_kind', sa.String(length=16), nullable=True),
    sa.Column('case_id', sa.String(length=36), nullable=True),
    sa.Column('no_content_reason', sa.Text(), nullable=True),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('completed_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('escalated_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['manager_id'], ['users.id'], name=op.f('fk_review_assignments_manager_id_users')),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_review_assignments_recording_id_recordings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_assignments')),
    sa.UniqueConstraint('recording_id', name=op.f('uq_review_assignments_recording_id'))
    )
    with op.batch_alter_table('review_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_assignments_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_assignments_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_review_assignments_due', ['completed_at', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_assignments_manager_id'), ['manager_id'], unique=False)

    op.create_table('review_alerts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('assignment_id', sa.String(length=36), nullable=True),
    sa.Column('recording_id', sa.String(length=36), nullable=True),
    sa.Column('manager_id', sa.String(length=36), nullable=True),
    sa.Column('unit', sa.String(length=128), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_at', hotline_api.db.base.UTCDateTime(), nullable=False),
    sa.Column('acknowledged_at', hotline_api.db.base.UTCDateTime(), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['assignment_id'], ['review_assignments.id'], name=op.f('fk_review_alerts_assignment_id_review_assignments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_alerts'))
    )
    with op.batch_alter_table('review_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_alerts_assignment_id'), ['assignment_id'], unique=False)


    _append_only_triggers()


def _append_only_triggers() -> None:
    """The audit log is append-only at the database level too (portable: SQLite and PostgreSQL)."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
                   "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END")
        op.execute("CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
                   "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END")
    elif dialect == "postgresql":
        op.execute("CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $$")
        op.execute("CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries "
                   "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_change ON audit_entries")
        op.execute("DROP FUNCTION IF EXISTS audit_entries_append_only()")
    with op.batch_alter_table('review_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_alerts_assignment_id'))

    op.drop_table('review_alerts')
    with op.batch_alter_table('review_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_assignments_manager_id'))
        batch_op.drop_index('ix_review_assignments_due')
        batch_op.drop_index(batch_op.f('ix_review_assignments_case_id'))
        batch_op.drop_index(batch_op.f('ix_review_assignments_call_id'))

    op.drop_table('review_assignments')
    op.drop_table('recording_blobs')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_user_id'))

    op.drop_table('web_sessions')
    op.drop_table('export_requests')
    with op.batch_alter_table('duty_roster', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duty_roster_day'))

    op.drop_table('duty_roster')
    op.drop_table('users')
    op.drop_table('retention_policies')
    op.drop_table('purge_stubs')
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_user_at')

    op.drop_table('login_attempts')
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_legal_holds_target_id'))

    op.drop_table('legal_holds')
    op.drop_table('crypto_state')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entries_object_id'))
        batch_op.drop_index('ix_audit_entries_at')
        batch_op.drop_index(batch_op.f('ix_audit_entries_action'))

    op.drop_table('audit_entries')
