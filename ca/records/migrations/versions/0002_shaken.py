"""STI-PA token API: credentials and access tokens (ca/tokens/stipa.py)

Revision ID: 0002_shaken
Revises: 0002_prodacct
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002_shaken'
down_revision: Union[str, Sequence[str], None] = '0002_prodacct'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('stipa_credentials',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('delegation_id', sa.String(length=32), nullable=False),
    sa.Column('sp_id', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_login_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['delegation_id'], ['delegations.id'], name=op.f('fk_stipa_credentials_delegation_id_delegations')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_stipa_credentials'))
    )
    with op.batch_alter_table('stipa_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stipa_credentials_delegation_id'), ['delegation_id'], unique=False)

    op.create_table('stipa_access_tokens',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['stipa_credentials.user_id'], name=op.f('fk_stipa_access_tokens_user_id_stipa_credentials'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_stipa_access_tokens'))
    )
    with op.batch_alter_table('stipa_access_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stipa_access_tokens_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stipa_access_tokens_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stipa_access_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stipa_access_tokens_user_id'))
        batch_op.drop_index(batch_op.f('ix_stipa_access_tokens_expires_at'))
    op.drop_table('stipa_access_tokens')
    with op.batch_alter_table('stipa_credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stipa_credentials_delegation_id'))
    op.drop_table('stipa_credentials')
