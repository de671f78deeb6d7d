"""Planner decisions: why each program day was called or not, with what the planner saw

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('plannerdecision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('program_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('decided_utc', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('forecast_peak_mw', sa.Float(), nullable=True),
    sa.Column('threshold_mw', sa.Float(), nullable=True),
    sa.Column('rank', sa.Integer(), nullable=True),
    sa.Column('budget_left', sa.Integer(), nullable=True),
    sa.Column('exclusions', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('forecast_source', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['event.event_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('program_id', 'day')
    )
    with op.batch_alter_table('plannerdecision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plannerdecision_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_plannerdecision_program_id'), ['program_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('plannerdecision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plannerdecision_program_id'))
        batch_op.drop_index(batch_op.f('ix_plannerdecision_event_id'))
    op.drop_table('plannerdecision')
