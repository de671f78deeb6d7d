"""pending messages: a partial index on the poll queue's undelivered rows

Every poll asks "is anything queued for this VEN?"; with only the ven_id index that
reads all the VEN's delivered history (it grows by a row per message sent).

Revision ID: 0007a
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007a'
down_revision = '0006'
branch_labels = None
depends_on = None

_UNDELIVERED = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    op.create_index('ix_outboundmessage_pending', 'outboundmessage', ['ven_id', 'id'],
                    unique=False, sqlite_where=_UNDELIVERED, postgresql_where=_UNDELIVERED)


def downgrade() -> None:
    op.drop_index('ix_outboundmessage_pending', table_name='outboundmessage')
