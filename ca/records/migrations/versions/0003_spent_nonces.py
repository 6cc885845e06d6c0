"""spent nonces: nonces are issued without a row (an HMAC under a shared key) and only spent ones are stored

Revision ID: 0003_spent_nonces
Revises: 0002_auditors
Create Date: 2026-12-05 02:00:00

The ``nonces`` table held every nonce handed out; its rows are only outstanding nonces, which
clients replace after a badNonce (RFC 8555 §6.5), so it is dropped rather than carried over.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003_spent_nonces'
down_revision: Union[str, Sequence[str], None] = '0002_auditors'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nonces_expires_at'))
    op.drop_table('nonces')
    op.create_table('spent_nonces',
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('value', name=op.f('pk_spent_nonces'))
    )
    with op.batch_alter_table('spent_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spent_nonces_expires_at'), ['expires_at'], unique=False)
    op.create_table('server_secrets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_server_secrets'))
    )


def downgrade() -> None:
    op.drop_table('server_secrets')
    with op.batch_alter_table('spent_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spent_nonces_expires_at'))
    op.drop_table('spent_nonces')
    op.create_table('nonces',
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('value', name=op.f('pk_nonces'))
    )
    with op.batch_alter_table('nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nonces_expires_at'), ['expires_at'], unique=False)
