"""Multi-row inserts through the driver, for the write path's hot tables.

PostgreSQL gets one ``INSERT ... SELECT FROM unnest(<one array per column>)`` statement (one round trip and
one prepared plan whatever the number of rows), or ``COPY ... FROM STDIN`` for large inserts; SQLite a plain
``executemany``. All skip SQLAlchemy's per-row parameter processing, which cost more than the database work
for a transaction Bundle. Rows are tuples in the order of ``columns``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from fhir_server.storage.engine import is_sqlite

COPY_FROM = 32  # rows; from here COPY (rows formatted in C) costs less than dumping one array per column


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
            sql = _unnest_insert(table, tuple(columns))
            cursor.execute(sql, [list(values) for values in zip(*rows, strict=True)])
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


@cache
def _unnest_insert(table: Table, columns: tuple[str, ...]) -> str:
    """``INSERT INTO table (columns) SELECT * FROM unnest(%s::<type>[], ...)``: one array parameter per column."""
    arrays = ", ".join(f"%s::{_array_element_type(table.c[name].type)}[]" for name in columns)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"


def _array_element_type(column_type: TypeEngine[Any]) -> str:
    """The column's PostgreSQL type name without a collation (an array cast takes none) or a length (a cast to
    VARCHAR(n) would silently truncate; the insert into the column itself refuses a value too long)."""
    name = column_type.compile(dialect=postgresql.dialect()).split(" COLLATE ", 1)[0]
    return re.sub(r"VARCHAR\(\d+\)", "VARCHAR", name)


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
