"""OpenADR 3.1 notifications: object changes, deliveries, MQTT password hashes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:53:28
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('objectchange',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('object_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('object_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('operation', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('ven_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('fanned_out', sa.Boolean(), nullable=False),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('objectchange', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_objectchange_fanned_out'), ['fanned_out'], unique=False)
        batch_op.create_index(batch_op.f('ix_objectchange_object_id'), ['object_id'], unique=False)

    op.create_table('oadr3delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('change_id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('bearer_token', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('claimed_until', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('delivered_at', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('failed_at', vtn.store.types.UTCDateTime(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['change_id'], ['objectchange.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oadr3delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oadr3delivery_change_id'), ['change_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3delivery_delivered_at'), ['delivered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3delivery_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oadr3delivery_subscription_id'), ['subscription_id'], unique=False)

    with op.batch_alter_table('oadr3client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mqtt_password_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('oadr3client', schema=None) as batch_op:
        batch_op.drop_column('mqtt_password_hash')

    with op.batch_alter_table('oadr3delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oadr3delivery_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_oadr3delivery_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_oadr3delivery_delivered_at'))
        batch_op.drop_index(batch_op.f('ix_oadr3delivery_change_id'))

    op.drop_table('oadr3delivery')
    with op.batch_alter_table('objectchange', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_objectchange_object_id'))
        batch_op.drop_index(batch_op.f('ix_objectchange_fanned_out'))

    op.drop_table('objectchange')
