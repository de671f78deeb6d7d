"""telemetry by meaning: registration metadata, resource status, revisions, raw values, quarantine

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reportregistration', schema=None) as batch_op:
        batch_op.add_column(sa.Column('item_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('report_type', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('reading_type', sqlmodel.sql.sqltypes.AutoString(), nullable=True))

    with op.batch_alter_table('telemetrypoint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('load_capacity', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('load_level_offset', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('load_percent_offset', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('load_setpoint', sa.Float(), nullable=True))

    op.create_table('telemetryrevision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ven_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('interval_start', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('interval_end', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('quantity', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('first_value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('report_request_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('received_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ven_id'], ['ven.ven_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('telemetryrevision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_telemetryrevision_ven_id'), ['ven_id'], unique=False)

    op.create_table('telemetryraw',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ven_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('report_request_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('report_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('r_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('interval_start', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('interval_end', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('registration', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('received_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ven_id'], ['ven.ven_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('telemetryraw', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_telemetryraw_ven_id'), ['ven_id'], unique=False)

    op.create_table('telemetryquarantine',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ven_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('report_request_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('report_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('r_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('interval_start', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('interval_end', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('received_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ven_id'], ['ven.ven_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('telemetryquarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_telemetryquarantine_ven_id'), ['ven_id'], unique=False)


def downgrade() -> None:
    for table in ('telemetryquarantine', 'telemetryraw', 'telemetryrevision'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_ven_id'))
        op.drop_table(table)
    with op.batch_alter_table('telemetrypoint', schema=None) as batch_op:
        for column in ('load_setpoint', 'load_percent_offset', 'load_level_offset', 'load_capacity'):
            batch_op.drop_column(column)
    with op.batch_alter_table('reportregistration', schema=None) as batch_op:
        for column in ('reading_type', 'report_type', 'item_name'):
            batch_op.drop_column(column)
