"""Schema migrations: the one way a database gets (or changes) its schema."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaNotManaged(RuntimeError):
    """A database with VTN tables but no migration history."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current(engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine, revision: str = "head") -> None:
    """Bring the database behind `engine` to `revision` (idempotent)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several VTN processes may start together: one migrates, the others wait.
            connection.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        tables = set(inspect(connection).get_table_names())
        if tables and "alembic_version" not in tables and "ven" in tables:
            raise SchemaNotManaged(
                f"{engine.url.render_as_string(hide_password=True)} holds VTN tables made "
                "before schema migrations existed (the walking skeleton); move it aside and "
                "enrol the VENs again, or stamp it by hand if you know it matches")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
