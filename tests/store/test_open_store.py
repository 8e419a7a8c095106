"""Choosing a store from BRIDGE_DATABASE_URL, and keeping passwords out of messages."""

from __future__ import annotations

import pytest

from bridge.core.errors import ConfigError
from bridge.store import open_store, redact_url
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SqliteStore


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///bridge.db", "bridge.db"),
        ("sqlite:///data/bridge.db", "data/bridge.db"),
        ("sqlite:////var/lib/bridge/bridge.db", "/var/lib/bridge/bridge.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///bridge.db", "bridge.db"),
    ],
)
def test_sqlite_urls_name_a_file(url: str, path: str) -> None:
    """Three slashes then a relative path, four for an absolute one."""
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert store.path == path


@pytest.mark.parametrize(
    "url", ["postgresql://bridge:pw@db:5432/bridge", "postgres://db/bridge", "postgresql:///bridge?host=/run"]
)
def test_postgres_urls_open_a_postgres_store(url: str) -> None:
    """Both libpq schemes are accepted (nothing connects before open())."""
    assert isinstance(open_store(url), PostgresStore)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2@db/bridge",
        "postgresql+psycopg://root:hunter2@db/bridge",
        "bridge.db",
        "sqlite://root:hunter2@host/bridge.db",
        "sqlite:///",
        "sqlite:///bridge.db?mode=ro",
        "postgresql://root:hunter2@db/bridge?nonsense=1",
        "postgresql://root:hunter 2@db/bridge",
    ],
)
def test_unusable_urls_are_config_errors_without_the_password(url: str) -> None:
    """A wrong URL stops start-up with a message that never repeats the password."""
    with pytest.raises(ConfigError) as raised:
        open_store(url)
    assert "hunter2" not in str(raised.value)
    assert raised.value.reason == "config_invalid"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://bridge:s3cret@db:5432/bridge", "postgresql://bridge:***@db:5432/bridge"),
        ("postgresql://bridge@db/bridge", "postgresql://bridge@db/bridge"),
        (
            "postgresql://db/bridge?password=s3cret&sslmode=require",
            "postgresql://db/bridge?password=***&sslmode=require",
        ),
        ("postgresql://u:p%40ss@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("host=db password=s3cret dbname=bridge", "host=db password=*** dbname=bridge"),
        ("sqlite:///bridge.db", "sqlite:///bridge.db"),
    ],
)
def test_redact_url_hides_passwords(url: str, redacted: str) -> None:
    """Passwords in the user part, the query or a keyword conninfo become ***."""
    assert redact_url(url) == redacted
