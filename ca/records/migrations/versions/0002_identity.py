"""accountable identity: delegation profiles (docs/identity.md)

Revision ID: 0002_identity
Revises: 0002_shaken
Create Date: 2026-12-04 21:45:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002_identity'
down_revision: Union[str, Sequence[str], None] = '0002_shaken'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('delegations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile', sa.String(length=16), server_default='delegate', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('delegations', schema=None) as batch_op:
        batch_op.drop_column('profile')
