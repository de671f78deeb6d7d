"""Indexes for the queries of every poll: a VEN's undelivered messages, a VEN's events

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

PENDING = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    op.create_index('ix_outboundmessage_pending', 'outboundmessage', ['ven_id', 'id'],
                    sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index('ix_eventtarget_ven_id', 'eventtarget', ['ven_id'])


def downgrade() -> None:
    op.drop_index('ix_eventtarget_ven_id', table_name='eventtarget')
    op.drop_index('ix_outboundmessage_pending', table_name='outboundmessage')
