"""accountable identity: delegation profiles, vetting and right-to-use records (docs/identity.md)

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
    op.create_table('delegation_vettings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delegation_id', sa.String(length=32), nullable=False),
    sa.Column('legal_name', sa.String(length=255), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('lei', sa.String(length=20), nullable=True),
    sa.Column('assurance', sa.String(length=16), nullable=False),
    sa.Column('vetted_by', sa.String(length=255), nullable=False),
    sa.Column('vetted_at', sa.DateTime(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('recorded_by', sa.String(length=255), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['delegation_id'], ['delegations.id'], name=op.f('fk_delegation_vettings_delegation_id_delegations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delegation_vettings')),
    sa.UniqueConstraint('delegation_id', name=op.f('uq_delegation_vettings_delegation_id'))
    )
    with op.batch_alter_table('delegation_vettings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delegation_vettings_lei'), ['lei'], unique=False)
    op.create_table('right_to_use_evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delegation_id', sa.String(length=32), nullable=False),
    sa.Column('scope_der', sa.LargeBinary(), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('verified_by', sa.String(length=255), nullable=False),
    sa.Column('verified_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_by', sa.String(length=255), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['delegation_id'], ['delegations.id'], name=op.f('fk_right_to_use_evidence_delegation_id_delegations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_right_to_use_evidence'))
    )
    with op.batch_alter_table('right_to_use_evidence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_right_to_use_evidence_delegation_id'), ['delegation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('right_to_use_evidence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_right_to_use_evidence_delegation_id'))
    op.drop_table('right_to_use_evidence')
    with op.batch_alter_table('delegation_vettings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delegation_vettings_lei'))
    op.drop_table('delegation_vettings')
    with op.batch_alter_table('delegations', schema=None) as batch_op:
        batch_op.drop_column('profile')
