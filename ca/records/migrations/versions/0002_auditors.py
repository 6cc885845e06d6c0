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


def downgrade() -> None:
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_column('note')
        batch_op.drop_column('tree_root')
