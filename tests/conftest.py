"""Shared fixtures. The database under test comes from FLEXADR_TEST_DATABASE_URL.

Unset (the default): a fresh SQLite file per test. A postgresql:// URL: a fresh
database per test on that server (the role needs CREATEDB), dropped afterwards.
Tests that touch the store are marked `db` (through the fixture), so
`pytest -m db` re-runs exactly those on another database.
"""
import logging
import os
import shutil
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from vtn.store import Store
from vtn.store.db import database_url as _driver_url

TEST_DATABASE_ENV = "FLEXADR_TEST_DATABASE_URL"


@pytest.fixture(autouse=True)
def _quiet_openleadr():
    # openleadr logs every message at INFO; keep test output readable.
    logging.getLogger("openleadr").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _root_logger_restored():
    # A CLI under test calls flexadr.logs.setup, which swaps the root handlers for one on
    # the test's captured stderr; once pytest closes that stream, any later log line
    # would print a "Logging error" traceback.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def vtn_sent_messages():
    """Every OpenADR message an in-process VTN sends during a test must be valid 2.0b:
    the XSD and the profile rules the XSD cannot express (flexadr/profile_rules.py)."""
    from openleadr import hooks

    from flexadr import xsd
    sent: list[str] = []

    async def capture(message):
        if message and message.lstrip().startswith("<"):
            sent.append(message)
    hooks.register("before_respond", capture)
    yield sent
    hooks.HOOKS["before_respond"].remove(capture)
    from flexadr import profile_rules
    invalid = []
    for message in sent:
        try:
            broken = profile_rules.violations(xsd.validate(message))
        except xsd.SchemaViolation as err:
            broken = err.errors
        if broken:
            invalid.append(broken[:3])
    assert not invalid, f"the VTN sent {len(invalid)} invalid message(s): {invalid[:3]}"


def pytest_collection_modifyitems(items):
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


def pytest_configure(config):
    config.addinivalue_line("markers", "db: uses the VTN store (runs on SQLite and PostgreSQL)")
    config.addinivalue_line("markers", "fuzz: bounded fuzzing of an endpoint (bench/fuzz_*.py runs longer)")


def _daemon_path(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def needs_daemon(name: str):
    """Mark a test that starts a system daemon itself (nginx, mosquitto, prosody): skipped
    locally without it; CI installs every daemon and sets FLEXADR_REQUIRE_DAEMONS=1, so
    there a missing one fails (in `daemon`) instead."""
    return pytest.mark.skipif(_daemon_path(name) is None
                              and os.environ.get("FLEXADR_REQUIRE_DAEMONS") != "1",
                              reason=f"{name} is not installed (Debian package {name})")


def daemon(name: str) -> str:
    """Path of a daemon a `needs_daemon` test starts."""
    path = _daemon_path(name)
    assert path, f"{name} is not installed (CI installs it: .ci/run)"
    return path


def fresh_database_url(tmp_path) -> tuple[str, callable]:
    """A URL of an empty database, and a function that removes it."""
    base = os.environ.get(TEST_DATABASE_ENV, "").strip()
    if not base or base.startswith("sqlite"):
        path = tmp_path / f"vtn-{uuid.uuid4().hex[:8]}.sqlite"
        return f"sqlite:///{path}", lambda: None
    url = make_url(_driver_url(base))
    name = f"flexadr_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        # An autovacuum worker may still be in the database; FORCE ends it (the role needs
        # pg_signal_backend, granted by .ci/run), a short retry covers a server without it.
        for attempt in range(10):
            try:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except ProgrammingError:
                if attempt == 9:
                    raise
                time.sleep(0.5)
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture
def database_url(tmp_path):
    url, drop = fresh_database_url(tmp_path)
    yield url
    drop()


@pytest.fixture
def store(database_url):
    store = Store(database_url)
    yield store
    store.close()
