"""auditors: checkpoint notes (C2SP tlog-checkpoint) and the number monitor's state

Revision ID: 0002_auditors
Revises: 0002_identity
Create Date: 2026-12-04 22:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002_auditors'
down_revision: Union[str, Sequence[str], None] = '0002_identity'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tree_root', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))

    op.create_table('ct_monitor_logs',
    sa.Column('url', sa.String(length=512), nullable=False),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('root_hash', sa.String(length=64), nullable=False),
    sa.Column('compact_range', sa.JSON(), nullable=False),
    sa.Column('checked_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('url', name=op.f('pk_ct_monitor_logs'))
    )
    op.create_table('ct_monitor_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('log_url', sa.String(length=512), nullable=False),
    sa.Column('leaf_index', sa.BigInteger(), nullable=False),
    sa.Column('entry_type', sa.String(length=16), nullable=False),
    sa.Column('logged_at', sa.DateTime(), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('issuer', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('not_after', sa.DateTime(), nullable=False),
    sa.Column('scope_der', sa.LargeBinary(), nullable=False),
    sa.Column('found_at', sa.DateTime(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ct_monitor_entries')),
    sa.UniqueConstraint('log_url', 'leaf_index', name='uq_ct_monitor_entries_log_url_leaf_index')
    )
    with op.batch_alter_table('ct_monitor_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ct_monitor_entries_serial'), ['serial'], unique=False)
    op.create_table('ct_monitor_scope_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('lo', sa.BigInteger(), nullable=True),
    sa.Column('hi', sa.BigInteger(), nullable=True),
    sa.Column('spc', sa.String(length=64), nullable=True),
    sa.Column('literal', sa.String(length=16), nullable=True),
    sa.Column('span_digits', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['entry_id'], ['ct_monitor_entries.id'],
                            name=op.f('fk_ct_monitor_scope_entries_entry_id_ct_monitor_entries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ct_monitor_scope_entries'))
    )
    with op.batch_alter_table('ct_monitor_scope_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ct_monitor_scope_entries_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index('ix_ct_monitor_scope_entries_span', ['width', 'span_digits', 'lo', 'hi', 'entry_id'],
                              unique=False)
        batch_op.create_index('ix_ct_monitor_scope_entries_spc', ['spc'], unique=False)


def downgrade() -> None:
    op.drop_table('ct_monitor_scope_entries')
    op.drop_table('ct_monitor_entries')
    op.drop_table('ct_monitor_logs')
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_column('note')
        batch_op.drop_column('tree_root')
