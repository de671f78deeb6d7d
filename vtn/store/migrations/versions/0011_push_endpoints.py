"""push endpoints: VENs registered for the 2.0b push exchange model, with delivery leases

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pushendpoint',
    sa.Column('ven_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('registered_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('lease_until', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('failing_since', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['ven_id'], ['ven.ven_id'], ),
    sa.PrimaryKeyConstraint('ven_id')
    )
    with op.batch_alter_table('pushendpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pushendpoint_lease_until'), ['lease_until'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pushendpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pushendpoint_lease_until'))
    op.drop_table('pushendpoint')
