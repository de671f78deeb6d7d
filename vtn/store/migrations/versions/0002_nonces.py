"""nonces: ReplayProtect nonces shared by every VTN process

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('noncerecord',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('expires_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('noncerecord', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_noncerecord_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('noncerecord', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_noncerecord_expires_at'))
    op.drop_table('noncerecord')
