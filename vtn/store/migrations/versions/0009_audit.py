"""The audit trail; the dispatch rules an event was created past (operator override)

Revision ID: 0009
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0009'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auditentry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auditentry', schema=None) as batch_op:
        for column in ('at', 'actor', 'action', 'subject_type', 'subject_id'):
            batch_op.create_index(batch_op.f(f'ix_auditentry_{column}'), [column], unique=False)
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rule_overrides', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_column('rule_overrides')
    with op.batch_alter_table('auditentry', schema=None) as batch_op:
        for column in ('subject_id', 'subject_type', 'action', 'actor', 'at'):
            batch_op.drop_index(batch_op.f(f'ix_auditentry_{column}'))
    op.drop_table('auditentry')
