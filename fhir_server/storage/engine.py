"""Database engines for the two supported backends: SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so that a
read-then-write (conditional create, If-Match) is serialised against other writers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text

WRITE = "fhir_write"
READ = "fhir_read"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``, configured for the backend."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_recycle", 1800)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # psycopg prepares a statement after 5 runs, and PostgreSQL then may switch to a generic plan that
        # ignores the values: a search for one patient's rare code started from the code's 20,000 rows
        # (450 ms instead of 2 ms). Plan each run with its values; planning costs well under a millisecond.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        dbapi_connection.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_connection.autocommit = autocommit

    return engine


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    if ":memory:" in url or url.rstrip("/") == "sqlite:":
        raise ValueError("an in-memory SQLite database cannot be shared between connections; use a file")
    kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 60})
    kwargs.setdefault("pool_size", 16)
    kwargs.setdefault("max_overflow", 16)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=60000",
            "cache_size=-65536",
            "temp_store=MEMORY",
            # LIKE 'abc%' can then use an index; search values are normalised to lower case before.
            "case_sensitive_like=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(READ):
            return  # no BEGIN: each read statement runs on its own (autocommit), like PostgreSQL reads
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE) else "BEGIN")

    return engine


def read_options(engine: Engine) -> dict[str, object]:
    """Execution options for a read unit: autocommit statements, without BEGIN/COMMIT round trips.

    SQLite skips its BEGIN in the hook above (setting an isolation level per checkout costs more than
    the read); PostgreSQL uses the driver's autocommit.
    """
    return {READ: True} if is_sqlite(engine) else {"isolation_level": "AUTOCOMMIT"}


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def lock_key(conn: Connection, key: str) -> None:
    """Serialise writers on ``key`` until the transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: write transactions are already
    serialised by ``BEGIN IMMEDIATE``, so nothing more is needed.
    """
    lock_keys(conn, [key])


def lock_keys(conn: Connection, keys: Sequence[str]) -> None:
    """``lock_key`` for each of ``keys``, in their order, in one statement (one round trip)."""
    if is_sqlite(conn) or not keys:
        return
    digests = [int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True) for k in keys]
    conn.execute(_LOCK_KEYS, {"keys": digests})


# unnest yields the keys in array order, and the locks are taken as the rows are produced.
_LOCK_KEYS = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS t(k)")
