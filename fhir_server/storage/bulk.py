"""Multi-row inserts through the driver, for the write path's hot tables.

PostgreSQL gets ``COPY ... FROM STDIN``; SQLite a plain ``executemany``. Both skip SQLAlchemy's
per-row parameter processing, which cost more than the database work for a transaction Bundle.
Rows are tuples in the order of ``columns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.exc import DBAPIError

from fhir_server.storage.engine import is_sqlite

COPY_FROM = 50  # rows; below this a pipelined INSERT costs fewer round trips than COPY's protocol


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` into ``table`` in the current transaction of ``conn``."""
    if not rows:
        return
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    names = ", ".join(columns)
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        if is_sqlite(conn):
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' for _ in columns)})"
            cursor.executemany(sql, [_sqlite_row(r) for r in rows])
        elif len(rows) < COPY_FROM:
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('%s' for _ in columns)})"
            cursor.executemany(sql, rows)
        else:
            sql = f"COPY {table.name} ({names}) FROM STDIN"
            with cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
    except dbapi_error as exc:
        # The same exception classes SQLAlchemy raises, so callers (the write retry) see an IntegrityError.
        raise DBAPIError.instance(sql, None, exc, dbapi_error) from exc
    finally:
        cursor.close()


def _sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Datetimes in the text form SQLAlchemy's SQLite DateTime type writes and compares against."""
    return tuple(_sqlite_datetime(v) if isinstance(v, datetime) else v for v in row)


def _sqlite_datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def next_primary_keys(conn: Connection, table: Table, count: int) -> list[int]:
    """``count`` fresh values for the integer primary key ``pk`` of ``table``.

    PostgreSQL draws them from the column's sequence; SQLite writers are serialised (BEGIN IMMEDIATE)
    and never delete resource rows, so the keys after the current maximum are free.
    """
    if is_sqlite(conn):
        start = conn.execute(text(f"SELECT coalesce(max(pk), 0) FROM {table.name}")).scalar_one()
        return list(range(start + 1, start + 1 + count))
    query = text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'pk')) FROM generate_series(1, :n)")
    return list(conn.execute(query, {"n": count}).scalars())
