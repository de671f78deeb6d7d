"""VENs an operator disabled or revoked; events forced past the program rules

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import vtn.store.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ven', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', vtn.store.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('disabled_reason', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', vtn.store.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forced_reason', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_column('forced_reason')
    with op.batch_alter_table('ven', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('disabled_reason')
        batch_op.drop_column('disabled_at')
