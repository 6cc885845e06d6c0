"""orders: the claim of the finalize holding an order "processing" (crash recovery)

Revision ID: 0002_reliability
Revises: 0001
Create Date: 2026-12-04 22:00:00

``processing_claim`` names the process (host, pid, start time) and request that set an order to
``processing``; ``processing_since`` is when. ``ca/orders/recovery.py`` reconciles an order whose
claim's process died (kill -9, a crash) on ``tnca serve`` start and when the order is next loaded.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002_reliability'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('processing_claim', sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column('processing_since', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('processing_since')
        batch_op.drop_column('processing_claim')
