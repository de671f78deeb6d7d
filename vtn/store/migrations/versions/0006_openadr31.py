"""OpenADR 3.1 edge: OAuth clients, 3.1 reports and subscriptions; VEN client ids

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oadr3client',
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('scopes', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('secret_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id')
    )
    op.create_table('oadr3subscription',
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('client_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('program_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('modified_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('subscription_id')
    )
    with op.batch_alter_table('oadr3subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oadr3subscription_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3subscription_client_name'), ['client_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3subscription_program_id'), ['program_id'], unique=False)

    op.create_table('oadr3report',
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('report_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ven_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('client_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('program_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('modified_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['event.event_id'], ),
    sa.ForeignKeyConstraint(['ven_id'], ['ven.ven_id'], ),
    sa.PrimaryKeyConstraint('report_id')
    )
    with op.batch_alter_table('oadr3report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oadr3report_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3report_client_name'), ['client_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3report_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3report_program_id'), ['program_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3report_ven_id'), ['ven_id'], unique=False)

    with op.batch_alter_table('ven', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('modified_at', vtn.store.types.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_ven_client_id'), ['client_id'], unique=True)

    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('modified_at', vtn.store.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_column('modified_at')
        batch_op.drop_column('created_at')

    with op.batch_alter_table('ven', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ven_client_id'))
        batch_op.drop_column('modified_at')
        batch_op.drop_column('created_at')
        batch_op.drop_column('client_id')

    op.drop_table('oadr3report')
    op.drop_table('oadr3subscription')
    op.drop_table('oadr3client')
