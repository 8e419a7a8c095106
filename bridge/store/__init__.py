"""Durable state: the Store port (``base``), its SQLite and PostgreSQL implementations, and the URL
that chooses one.

```
BRIDGE_DATABASE_URL                     store
sqlite:///relative/path.db              SqliteStore("relative/path.db")   one replica
sqlite:////absolute/path.db             SqliteStore("/absolute/path.db")
sqlite:///:memory:                      SqliteStore(":memory:")           tests only
postgresql://... or postgres://...      PostgresStore(url)                several replicas
```
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit

from bridge.core.errors import ConfigError
from bridge.store.base import UPDATABLE_FIELDS, JobUpdate, Store, StoreClosed, check_update

__all__ = [
    "UPDATABLE_FIELDS",
    "JobUpdate",
    "Store",
    "StoreClosed",
    "check_update",
    "open_store",
    "redact_url",
]

_SECRET_KEYS = frozenset({"password", "sslpassword"})
_KEYWORD_SECRET = re.compile(r"\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: fit for logs and error messages."""
    if "://" not in url:
        return _KEYWORD_SECRET.sub(lambda match: f"{match[1]}={MASK}", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.split('://', 1)[0]}://{MASK}"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hosts}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(key, safe='')}={MASK if key.lower() in _SECRET_KEYS else quote(value, safe='')}"
            for key, value in pairs
        )
    tail = (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return f"{parts.scheme}://{netloc}{parts.path}{tail}"


def open_store(url: str, *, release_leases: bool = True, sqlite_on_loop: bool = False) -> Store:
    """The store ``url`` names, not yet opened (call ``await store.open()``).

    ``release_leases`` (SQLite only): the process is the database's only replica, so lane leases
    found at ``open()`` belonged to a dead process and are released. Pass ``False`` from admin
    commands that may run beside a live service. PostgreSQL leases simply expire.

    ``sqlite_on_loop`` (SQLite only): run the group commits on the caller's event loop instead of a
    writer thread (``SqliteStore(on_loop=True)``), for the worker process, which owns the database
    and whose loop has little else to do.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(
            f"database URL {redact_url(url)!r} has no scheme: use sqlite:///... or postgresql://..."
        )
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(
                f"SQLite URL {redact_url(url)!r} must be sqlite:///relative.db, sqlite:////absolute.db "
                "or sqlite:///:memory:"
            )
        path = rest[1:]
        if "?" in path or "#" in path:
            raise ConfigError(f"SQLite URL {redact_url(url)!r} takes no query or fragment")
        from bridge.store.sqlite import SqliteStore  # imported here: SQLite runs never load psycopg

        return SqliteStore(path, release_leases=release_leases, on_loop=sqlite_on_loop)
    if scheme in ("postgresql", "postgres"):
        from psycopg.conninfo import conninfo_to_dict

        from bridge.store.postgres import PostgresStore

        try:
            conninfo_to_dict(url)
        except Exception:  # the driver's message may quote the URL, password included
            raise ConfigError(f"not a valid PostgreSQL URL: {redact_url(url)!r}") from None
        return PostgresStore(url)
    hint = " (drop the '+driver' part)" if "+" in scheme else ""
    raise ConfigError(
        f"database URL scheme {scheme!r} is not supported{hint}: use sqlite:///... or postgresql://..."
        f" (got {redact_url(url)!r})"
    )
