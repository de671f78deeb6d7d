"""Console users, their admin-API tokens and console sessions

Revision ID: 0010
Revises: 0009 (0006 on the console branch; chained after dispatch's 0009)
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import vtn.store.types


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_user',
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('disabled_at', vtn.store.types.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('username')
    )
    op.create_table('api_token',
    sa.Column('token_digest', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', vtn.store.types.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['username'], ['console_user.username'], ),
    sa.PrimaryKeyConstraint('token_digest')
    )
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_token_username'), ['username'], unique=False)
    op.create_table('user_session',
    sa.Column('session_digest', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('csrf_token', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.Column('expires_at', vtn.store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['username'], ['console_user.username'], ),
    sa.PrimaryKeyConstraint('session_digest')
    )
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_session_username'), ['username'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_session_username'))
    op.drop_table('user_session')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_token_username'))
    op.drop_table('api_token')
    op.drop_table('console_user')
