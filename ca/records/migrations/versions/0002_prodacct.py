"""external account keys name their delegate, expire and can be revoked; rate-limit counters

Revision ID: 0002_prodacct
Revises: 0002_reliability
Create Date: 2026-12-04 22:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002_prodacct'
down_revision: Union[str, Sequence[str], None] = '0002_reliability'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('external_account_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delegate', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('created_by', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_external_account_keys_delegate'), ['delegate'], unique=False)
    # Keys made before delegates were recorded act for their delegation's delegate.
    op.execute(
        "UPDATE external_account_keys SET delegate = "
        "(SELECT delegate FROM delegations WHERE delegations.id = external_account_keys.delegation_id) "
        "WHERE delegate IS NULL AND delegation_id IS NOT NULL"
    )

    op.create_table('rate_limit_counters',
    sa.Column('limit_name', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('window_end', sa.DateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('audited', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('limit_name', 'key', 'window_start', name=op.f('pk_rate_limit_counters'))
    )
    with op.batch_alter_table('rate_limit_counters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_limit_counters_window_end'), ['window_end'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rate_limit_counters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_limit_counters_window_end'))
    op.drop_table('rate_limit_counters')
    with op.batch_alter_table('external_account_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_external_account_keys_delegate'))
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('created_by')
        batch_op.drop_column('delegate')
