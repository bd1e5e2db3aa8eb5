"""The Repository: the one seam between the FHIR layer and the database.

Every write (REST, transaction/batch Bundle, HL7 v2, import) goes through a ``WriteUnit``: one database
transaction in which each resource write puts the resource row, a history row and its index rows.
Nothing above this module writes SQL. Interactions follow https://hl7.org/fhir/R4/http.html.

Concurrency: a conditional create/update/delete takes a lock named after its query (PostgreSQL advisory
lock; SQLite serialises writers with BEGIN IMMEDIATE), so two identical conditional creates can never
both create. Updates lock the resource row; version ids are strictly sequential.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, delete, not_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from fhir_server.errors import BadRequest, Conflict, Forbidden, Gone, NotFound, PreconditionFailed, TooCostly
from fhir_server.formats.json import json_bytes, parse_json
from fhir_server.search.extract import IndexRows, extract_index
from fhir_server.search.include import Found, included
from fhir_server.search.query import Cursor, SearchQuery
from fhir_server.search.sql import Compiler, search_statement, sort_label
from fhir_server.search.visibility import Access, Visibility
from fhir_server.storage.bulk import insert_rows, next_primary_keys
from fhir_server.storage.engine import WRITE, is_sqlite, lock_keys, read_options
from fhir_server.storage.history import HistoryQuery, history_statement
from fhir_server.storage.model import Stored, WriteResult, instant, utc_now
from fhir_server.storage.schema import INDEX_TABLES, idx_reference, resource, resource_history
from fhir_server.storage.statistics import PlannerStatistics

T = TypeVar("T")

_COLUMNS = (
    resource.c.pk,
    resource.c.resource_type,
    resource.c.id,
    resource.c.version,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.content,
)


# The hot read statements, built once (statement construction costs more than the SQLite query itself).
_KEY = (
    resource.c.partition == bindparam("partition"),
    resource.c.resource_type == bindparam("resource_type"),
    resource.c.id == bindparam("id"),
)
_CURRENT = select(*_COLUMNS).where(*_KEY)
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()
_VERSION = select(resource_history).where(
    resource_history.c.partition == bindparam("partition"),
    resource_history.c.resource_type == bindparam("resource_type"),
    resource_history.c.id == bindparam("id"),
    resource_history.c.version == bindparam("version"),
)


RESOURCE_COLUMNS = ("pk", "partition", "resource_type", "id", "version", "last_updated", "deleted", "content")
HISTORY_COLUMNS = ("partition", "resource_type", "id", "version", "last_updated", "deleted", "method", "content")
# Plain index rows leave ``grp`` NULL; composite component rows carry it last.
INDEX_COLUMNS = {kind: tuple(c.name for c in table.columns if c.name != "grp") for kind, table in INDEX_TABLES.items()}
GROUPED_COLUMNS = {kind: (*columns, "grp") for kind, columns in INDEX_COLUMNS.items()}


def new_id() -> str:
    """A server-assigned logical id."""
    return str(uuid.uuid4())


def _check_if_match(current: Stored, if_match: int | None) -> None:
    """412 unless ``If-Match`` (when given) names the current, not deleted, version."""
    if if_match is not None and (current.deleted or if_match != current.version):
        raise PreconditionFailed(
            f"If-Match version {if_match} does not match the current version {current.version} of {current.reference}"
        )


def _moment(after: datetime | None) -> datetime:
    """The time of a new version: now (taken after the row lock), and always after the version it replaces."""
    now = utc_now()
    return now if after is None or now > after else after + timedelta(microseconds=1)


def _stored(row: Any, method: str = "") -> Stored:
    return Stored(
        resource_type=row.resource_type,
        id=row.id,
        version=row.version,
        last_updated=row.last_updated,
        deleted=bool(row.deleted),
        content=bytes(row.content),
        method=method or getattr(row, "method", ""),
    )


@dataclass
class SearchPage:
    """One page of search results with the cursors of the pages after and before it (None at the ends)."""

    matches: list[Stored]
    next_cursor: Cursor | None = None
    previous_cursor: Cursor | None = None
    pks: list[int] = field(default_factory=list)


@dataclass
class _Pending:
    """A brand-new resource waiting for the batched insert at flush time."""

    stored: Stored
    index: IndexRows


@dataclass
class ReadUnit:
    """Reads inside one database transaction (a consistent snapshot on PostgreSQL)."""

    conn: Connection
    partition: str
    base_url: str | None = None
    search_timeout_ms: int = 0  # PostgreSQL: cancel a search statement after this long (0: no limit)
    access: Access | None = None  # what the caller may see and do (a SMART token); None: everything

    def current(self, resource_type: str, id: str, *, for_update: bool = False) -> tuple[int, Stored] | None:
        """The current row (pk, version) of a resource, deleted or not; None if it never existed."""
        stmt = _CURRENT_FOR_UPDATE if for_update and not is_sqlite(self.conn) else _CURRENT
        row = self.conn.execute(stmt, {"partition": self.partition, "resource_type": resource_type, "id": id}).first()
        return (row.pk, _stored(row)) if row else None

    def read(self, resource_type: str, id: str) -> Stored:
        """https://hl7.org/fhir/R4/http.html#read: 404 if unknown, 410 if deleted."""
        found = self.current(resource_type, id)
        if found is None or not self.sees(found[0], resource_type, "r"):
            raise NotFound(f"{resource_type}/{id} is not known")
        stored = found[1]
        if stored.deleted:
            raise Gone(f"{resource_type}/{id} was deleted (version {stored.version})")
        return stored

    def vread(self, resource_type: str, id: str, version: int) -> Stored:
        """https://hl7.org/fhir/R4/http.html#vread: a specific version; 410 for a deletion version."""
        key = {"partition": self.partition, "resource_type": resource_type, "id": id, "version": version}
        row = self.conn.execute(_VERSION, key).first()
        if row is None or not self._sees_current(resource_type, id, "r"):
            raise NotFound(f"{resource_type}/{id} has no version {version}")
        stored = _stored(row)
        if stored.deleted:
            raise Gone(f"version {version} of {resource_type}/{id} is a deletion")
        return stored

    def referencing(self, resource_type: str, id: str) -> list[tuple[int, Stored]]:
        """The current resources (pk, version) with an indexed reference to ``resource_type/id`` on this server.

        Found through the reference index, so only references at a search parameter's path count; a
        resource that refers to the target several times is listed once.
        """
        pointing = select(idx_reference.c.resource_pk).where(
            idx_reference.c.partition == self.partition,
            idx_reference.c.target_type == resource_type,
            idx_reference.c.target_id == id,
            idx_reference.c.url.is_(None),
        )
        stmt = select(*_COLUMNS).where(resource.c.pk.in_(pointing), resource.c.deleted.is_(False))
        return [(row.pk, _stored(row)) for row in self.conn.execute(stmt.order_by(resource.c.pk))]

    def search(self, query: SearchQuery) -> SearchPage:
        """Run a search: one SQL statement over the index tables, keyset-paged on the sort keys and pk."""
        stmt = self._statement(query)
        rows = list(self.execute_search(stmt).all())
        limit = query.count
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        backward = query.cursor is not None and query.cursor.backward
        if backward:
            rows.reverse()
        labels = [sort_label(k) for k in query.sort]

        def cursor(row: Any, before: bool) -> Cursor:
            return Cursor(tuple(getattr(row, label) for label in labels), row.pk, before)

        following = cursor(rows[-1], False) if rows and (more if not backward else True) else None
        preceding = cursor(rows[0], True) if rows and (more if backward else query.cursor is not None) else None
        return SearchPage([_stored(r) for r in rows], following, preceding, [r.pk for r in rows])

    def _statement(self, query: SearchQuery, *, count: bool = False) -> Any:
        """The SQL of ``query`` (its total when ``count``), references to this server's base made relative."""
        relative = query.relative_to(self.base_url)
        visibility = self.visibility("s")
        return search_statement(relative, self.conn, self.partition, _COLUMNS, count=count, visibility=visibility)

    # -- access ----------------------------------------------------------------------------------------
    def visibility(self, interaction: str) -> Visibility | None:
        """What ``access`` lets this unit see for an interaction letter (None: everything)."""
        return None if self.access is None else Visibility(self.access, interaction)

    def sees(self, pk: int, resource_type: str, interaction: str) -> bool:
        """Whether the resource row ``pk`` is visible for ``interaction``: one indexed SQL check."""
        visibility = self.visibility(interaction)
        if visibility is None or not visibility.restricts(resource_type):
            return True
        compiler = Compiler(self.conn, self.partition, visibility)
        stmt = select(resource.c.pk).where(resource.c.pk == pk, compiler.visible((resource_type,), resource))
        return self.conn.execute(stmt).first() is not None

    def _sees_current(self, resource_type: str, id: str, interaction: str) -> bool:
        if self.access is None:
            return True
        found = ReadUnit.current(self, resource_type, id)
        return found is not None and self.sees(found[0], resource_type, interaction)

    def execute_search(self, stmt: Any) -> Any:
        """Execute a search statement, cancelled after ``search_timeout_ms`` on PostgreSQL."""
        if not self.search_timeout_ms or is_sqlite(self.conn):
            return self.conn.execute(stmt)
        self.conn.exec_driver_sql(f"SET statement_timeout = {int(self.search_timeout_ms)}")
        try:
            return self.conn.execute(stmt)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "57014":
                raise
            raise TooCostly(
                f"the search ran longer than {self.search_timeout_ms} ms and was cancelled; narrow it down"
            ) from exc
        finally:
            self.conn.exec_driver_sql("RESET statement_timeout")

    def include(self, query: SearchQuery, page: SearchPage, limit: int) -> tuple[list[Stored], bool]:
        """The resources ``query``'s ``_include``/``_revinclude`` add to ``page``, and whether ``limit`` cut them."""
        if not query.includes or not page.matches:
            return [], False
        found = [Found(pk, s.resource_type, s.id) for pk, s in zip(page.pks, page.matches, strict=True)]
        rows, cut = included(
            self.conn, self.partition, found, query.includes, _COLUMNS, limit, visibility=self.visibility("r")
        )
        return [_stored(r) for r in rows], cut

    def estimate(self, query: SearchQuery) -> int:
        """The planner's estimate of how many resources match (PostgreSQL); the exact count on SQLite."""
        if is_sqlite(self.conn):
            return self.count(query)
        stmt = self._statement(query, count=True)
        compiled = stmt.compile(dialect=self.conn.dialect)
        plan = self.conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled.string}", compiled.params).scalar_one()
        aggregate = plan[0]["Plan"]  # count(*) over the matching rows: the estimate is its input's
        return int(aggregate.get("Plans", [aggregate])[0]["Plan Rows"])

    def count(self, query: SearchQuery) -> int:
        """The number of resources matching ``query`` (ignoring paging)."""
        stmt = self._statement(query, count=True)
        return int(self.execute_search(stmt).scalar_one())

    def history(self, query: HistoryQuery) -> tuple[list[Stored], HistoryQuery | None]:
        """A page of versions, newest first, and the query for the next page (None when done)."""
        rows = self.conn.execute(history_statement(query, self.partition, self._visible_ids(query))).all()
        more = len(rows) > query.count
        rows = rows[: query.count]
        page = [_stored(r) for r in rows]
        return page, (query.after(page[-1]) if more and page else None)

    def _visible_ids(self, query: HistoryQuery) -> Any:
        """History: the (type, id) of the resources whose versions the caller may see (None: all).

        Instance history is all or nothing: a 404 when the resource is not visible.
        """
        if self.access is None:
            return None
        if query.id is not None and query.resource_type is not None:
            if not self._sees_current(query.resource_type, query.id, "r"):
                raise NotFound(f"{query.resource_type}/{query.id} is not known")
            return None
        types = (query.resource_type,) if query.resource_type else None
        compiler = Compiler(self.conn, self.partition, self.visibility("s"))
        return select(resource.c.resource_type, resource.c.id).where(
            resource.c.partition == self.partition, compiler.visible(types, resource)
        )


@dataclass
class WriteUnit(ReadUnit):
    """Reads and writes inside one database transaction; brand-new resources are inserted in bulk."""

    _pending: list[_Pending] = field(default_factory=list)
    _locks: set[str] = field(default_factory=set)  # conditional-criteria locks held until the transaction ends
    written: int = 0  # resource versions written, for the planner statistics

    # -- reads see pending writes -------------------------------------------------------------
    def current(self, resource_type: str, id: str, *, for_update: bool = False) -> tuple[int, Stored] | None:
        self.flush()
        return super().current(resource_type, id, for_update=for_update)

    def vread(self, resource_type: str, id: str, version: int) -> Stored:
        self.flush()
        return super().vread(resource_type, id, version)

    def search(self, query: SearchQuery) -> SearchPage:
        self.flush()
        return super().search(query)

    def count(self, query: SearchQuery) -> int:
        self.flush()
        return super().count(query)

    def referencing(self, resource_type: str, id: str) -> list[tuple[int, Stored]]:
        self.flush()
        return super().referencing(resource_type, id)

    def history(self, query: HistoryQuery) -> tuple[list[Stored], HistoryQuery | None]:
        self.flush()
        return super().history(query)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Work that may fail on its own: on an exception its writes, flushed or pending, are undone (SAVEPOINT)
        and the unit's earlier writes kept; the exception propagates. Group commit applies several HL7
        messages in one transaction this way."""
        self.flush()
        written, locks = self.written, set(self._locks)
        nested = self.conn.begin_nested()
        try:
            yield
            self.flush()
        except BaseException:
            self._pending.clear()
            self.written, self._locks = written, locks  # locks taken inside may be released with it
            nested.rollback()
            raise
        nested.commit()

    # -- interactions ---------------------------------------------------------------------------
    def create(self, body: dict[str, Any], id: str | None = None) -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#create: a new resource with a server-assigned id.

        ``id`` lets a transaction pre-assign the id it already used to rewrite ``urn:uuid:`` references.
        """
        self._require("c", body["resourceType"])
        stamped, stored = self._version(body, id or new_id(), 1)
        self._pending.append(_Pending(stored, self._index(stamped)))
        return WriteResult(stored, created=True)

    def update(self, body: dict[str, Any], id: str, *, if_match: int | None = None, method: str = "PUT") -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#update, including create-on-update with a client id."""
        resource_type = body["resourceType"]
        found = self.current(resource_type, id, for_update=True)
        if found is None:
            if if_match is not None:
                raise PreconditionFailed(f"{resource_type}/{id} does not exist, so If-Match cannot match")
            return self.create(body, id)
        pk, old = found
        interaction = "c" if old.deleted else "u"
        self._require(interaction, resource_type)
        if not old.deleted:
            self._require_visible(pk, old, "u")
        _check_if_match(old, if_match)
        stamped, stored = self._version(body, id, old.version + 1, after=old.last_updated)
        self._replace(pk, old, stored, self._index(stamped), method)
        self._require_visible(pk, stored, interaction, written=True)
        return WriteResult(stored, created=old.deleted)

    def delete(self, resource_type: str, id: str, *, if_match: int | None = None) -> WriteResult | None:
        """https://hl7.org/fhir/R4/http.html#delete: a versioned tombstone.

        None when there is nothing to delete (never existed, or already deleted): R4 answers that with
        success too, and writes nothing.
        """
        found = self.current(resource_type, id, for_update=True)
        if found is None or found[1].deleted:
            if if_match is not None:
                raise PreconditionFailed(f"{resource_type}/{id} does not exist, so If-Match cannot match")
            return None
        pk, old = found
        self._require_visible(pk, old, "d")
        _check_if_match(old, if_match)
        tombstone = Stored(resource_type, id, old.version + 1, _moment(old.last_updated), True, b"", "DELETE")
        self._replace(pk, old, tombstone, IndexRows(), "DELETE")
        return WriteResult(tombstone)

    def conditional_matches(self, query: SearchQuery, *, limit: int = 2) -> list[Stored]:
        """The resources a conditional interaction's criteria select, locked against identical writers."""
        self.lock_conditions([query])
        return self.search(query.with_count(limit)).matches

    def conditional_match(self, query: SearchQuery, what: str, code: str = "multiple-matches") -> Stored | None:
        """The one resource the criteria select, or None; several is a 412 (R4 conditional interactions)."""
        matches = self.conditional_matches(query)
        if len(matches) > 1:
            raise PreconditionFailed(f"{what} criteria '{query.canonical()}' match more than one resource", code=code)
        return matches[0] if matches else None

    def lock_conditions(self, queries: Iterable[SearchQuery]) -> None:
        """Take the locks of several conditional criteria in one global order (a transaction Bundle asks for all
        of its own at once, so two Bundles never deadlock on them); those this unit holds already are not asked
        for again. A unit that takes locks in several calls (a group of HL7 messages) can still deadlock with
        another writer: PostgreSQL detects it and the unit is retried."""
        names = {f"conditional:{self.partition}:{q.resource_type}?{q.canonical()}" for q in queries} - self._locks
        lock_keys(self.conn, sorted(names))
        self._locks |= names

    def conditional_create(self, body: dict[str, Any], query: SearchQuery) -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#ccreate: create unless ``If-None-Exist`` matches one."""
        match = self.conditional_match(query, "If-None-Exist", code="duplicate")
        if match is not None:
            return WriteResult(match, created=False, changed=False)
        return self.create(body)

    def conditional_update(self, body: dict[str, Any], query: SearchQuery) -> WriteResult:
        """https://hl7.org/fhir/R4/http.html#cond-update"""
        return self.update(body, self.conditional_target(query, body.get("id")))

    def conditional_target(self, query: SearchQuery, body_id: Any) -> str:
        """The id a conditional update writes: the one match, else the body's id (if free) or a new one."""
        match = self.conditional_match(query, "conditional update")
        if match is not None:
            if body_id not in (None, match.id):
                raise BadRequest(
                    f"the body's id '{body_id}' differs from the id '{match.id}' the criteria matched",
                    expression="id",
                )
            return match.id
        if body_id is None:
            return new_id()
        existing = self.current(str(query.resource_type), body_id)
        if existing is not None and not existing[1].deleted:
            raise Conflict(
                f"no resource matches the criteria, but {query.resource_type}/{body_id} exists and does not match them",
                expression="id",
            )
        return str(body_id)

    def conditional_delete(self, query: SearchQuery, *, multiple: bool, limit: int) -> list[WriteResult]:
        """https://hl7.org/fhir/R4/http.html#cdelete: one match, or all of them when ``multiple``."""
        matches = self.conditional_matches(query, limit=limit + 1 if multiple else 2)
        if len(matches) > 1 and not multiple:
            raise PreconditionFailed(
                f"conditional delete criteria '{query.canonical()}' match more than one resource",
                code="multiple-matches",
            )
        if len(matches) > limit:
            raise PreconditionFailed(f"conditional delete would remove more than {limit} resources")
        results = [self.delete(m.resource_type, m.id) for m in matches]
        return [r for r in results if r is not None]

    def check_update(self, pk: int, current: Stored) -> None:
        """The access checks ``update`` makes before changing ``current``, for a dry run (a preview)."""
        self._require("u", current.resource_type)
        self._require_visible(pk, current, "u")

    # -- the write path -------------------------------------------------------------------------
    def _version(
        self, body: dict[str, Any], id: str, version: int, after: datetime | None = None
    ) -> tuple[dict[str, Any], Stored]:
        """A copy of the client's dict with id and meta stamped, and its bytes (serialised once, as served).

        The client's dict is left as it was, so a retried unit starts from the same input.
        """
        now = _moment(after)
        meta = {**(body.get("meta") or {}), "versionId": str(version), "lastUpdated": instant(now)}
        stamped = {"resourceType": body["resourceType"], "id": id, "meta": meta}
        stamped.update((k, v) for k, v in body.items() if k not in stamped)
        return stamped, Stored(body["resourceType"], id, version, now, False, json_bytes(stamped))

    def _index(self, body: dict[str, Any]) -> IndexRows:
        return extract_index(body, self.base_url)

    def _replace(self, pk: int, old: Stored, new: Stored, index: IndexRows, method: str) -> None:
        """Write a new version over an existing row: resource row, history row, changed index tables."""
        self.written += 1
        self.conn.execute(
            update(resource)
            .where(resource.c.pk == pk)
            .values(version=new.version, last_updated=new.last_updated, deleted=new.deleted, content=new.content)
        )
        insert_rows(self.conn, resource_history, HISTORY_COLUMNS, [self._history_row(new, method)])
        previous = IndexRows() if old.deleted else self._index(old.resource())
        changed = [
            kind
            for kind in INDEX_TABLES
            if set(previous.rows(kind)) != set(index.rows(kind))
            or previous.grouped_rows(kind) != index.grouped_rows(kind)
        ]
        for kind in changed:
            self.conn.execute(delete(INDEX_TABLES[kind]).where(INDEX_TABLES[kind].c.resource_pk == pk))
        self._insert_index([(pk, new.resource_type, index)], changed)

    def _history_row(self, stored: Stored, method: str) -> tuple[Any, ...]:
        return (
            self.partition,
            stored.resource_type,
            stored.id,
            stored.version,
            stored.last_updated,
            stored.deleted,
            method,
            stored.content,
        )

    def _insert_index(self, indexed: Sequence[tuple[int, str, IndexRows]], kinds: Iterable[str] = INDEX_TABLES) -> None:
        """Insert the index rows of (pk, resource type, rows) triples: one bulk insert per table and kind of row."""
        for kind in kinds:
            table = INDEX_TABLES[kind]
            prefixes = [((pk, self.partition, resource_type), index) for pk, resource_type, index in indexed]
            plain = [prefix + row for prefix, index in prefixes for row in index.rows(kind)]
            insert_rows(self.conn, table, INDEX_COLUMNS[kind], plain)
            grouped = [prefix + row for prefix, index in prefixes for row in index.grouped_rows(kind)]
            insert_rows(self.conn, table, GROUPED_COLUMNS[kind], grouped)

    def reindex(self, after_pk: int, size: int) -> int | None:
        """Rebuild the index rows of the next ``size`` current resources after ``after_pk`` (after a change to
        the extraction or the registry); the last pk done, None when there were none left."""
        rows = self.conn.execute(
            select(resource.c.pk, resource.c.content)
            .where(resource.c.partition == self.partition, resource.c.deleted.is_(False), resource.c.pk > after_pk)
            .order_by(resource.c.pk)
            .limit(size)
        ).all()
        if not rows:
            return None
        pks = [row.pk for row in rows]
        for table in INDEX_TABLES.values():
            self.conn.execute(delete(table).where(table.c.resource_pk.in_(pks)))
        bodies = [(row.pk, parse_json(bytes(row.content))) for row in rows]
        self._insert_index([(pk, body["resourceType"], self._index(body)) for pk, body in bodies])
        return int(pks[-1])

    def flush(self) -> None:
        """Insert every pending new resource: one bulk insert (COPY on PostgreSQL) per table."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.written += len(pending)
        pks = next_primary_keys(self.conn, resource, len(pending))
        rows = [
            (pk, self.partition, s.resource_type, s.id, s.version, s.last_updated, False, s.content)
            for pk, s in zip(pks, (p.stored for p in pending), strict=True)
        ]
        insert_rows(self.conn, resource, RESOURCE_COLUMNS, rows)
        insert_rows(
            self.conn, resource_history, HISTORY_COLUMNS, [self._history_row(p.stored, "POST") for p in pending]
        )
        self._insert_index([(pk, p.stored.resource_type, p.index) for p, pk in zip(pending, pks, strict=True)])
        self._require_created_visible(pks, [p.stored for p in pending])

    # -- access ---------------------------------------------------------------------------------
    def _require(self, interaction: str, resource_type: str) -> None:
        """403 unless the caller may perform ``interaction`` (``c r u d s``) on the type at all."""
        if self.access is not None:
            self.access.require(interaction, resource_type)

    def _require_visible(self, pk: int, stored: Stored, interaction: str, *, written: bool = False) -> None:
        """403 when the resource (before a change, or as ``written``) is outside the caller's access."""
        if self.sees(pk, stored.resource_type, interaction):
            return
        if written:
            raise Forbidden(
                f"{stored.reference} as written would be outside what the access token may reach "
                "(for a patient token: not in that patient's compartment)"
            )
        raise Forbidden(f"{stored.reference} is outside what the access token may reach")

    def _require_created_visible(self, pks: Sequence[int], created: Sequence[Stored]) -> None:
        """403 (the whole unit rolls back) when a new resource would be outside the caller's access."""
        visibility = self.visibility("c")
        types = sorted({s.resource_type for s in created})
        if visibility is None or not any(visibility.restricts(t) for t in types):
            return
        compiler = Compiler(self.conn, self.partition, visibility)
        outside = select(resource.c.resource_type, resource.c.id).where(
            resource.c.pk.in_(pks), not_(compiler.visible(types, resource))
        )
        row = self.conn.execute(outside.limit(1)).first()
        if row is not None:
            raise Forbidden(
                f"{row.resource_type}/{row.id} as written would be outside what the access token may reach "
                "(for a patient token: not in that patient's compartment)"
            )


_RETRYABLE = (IntegrityError, OperationalError)


class Repository:
    """Opens read and write units on one engine, for one partition (tenant)."""

    def __init__(
        self, engine: Engine, partition: str = "default", base_url: str | None = None, search_timeout_ms: int = 0
    ) -> None:
        self.engine = engine
        self.search_timeout_ms = search_timeout_ms
        self.partition = partition
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        # SQLite has one writer at a time anyway; queueing this process's writers on a lock avoids
        # SQLite's busy handler, which sleeps in growing steps and makes write latency jump.
        self._writer = threading.Lock() if is_sqlite(engine) else contextlib.nullcontext()
        self.statistics = PlannerStatistics(engine)

    @contextmanager
    def reading(self, access: Access | None = None) -> Iterator[ReadUnit]:
        """A read unit in autocommit mode: each statement sees the latest commits, without BEGIN/COMMIT
        round trips (a read interaction is one statement)."""
        with self.engine.connect().execution_options(**read_options(self.engine)) as conn:
            yield ReadUnit(conn, self.partition, self.base_url, self.search_timeout_ms, access)

    @contextmanager
    def writing(self, access: Access | None = None) -> Iterator[WriteUnit]:
        with self._writer, self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            unit = WriteUnit(conn, self.partition, self.base_url, access=access)
            yield unit
            unit.flush()
        self.statistics.written(unit.written)

    def write(self, work: Callable[[WriteUnit], T], attempts: int = 4, access: Access | None = None) -> T:
        """Run ``work`` in one write transaction, retrying it when a concurrent writer collided."""
        for attempt in range(attempts):
            try:
                with self.writing(access) as unit:
                    return work(unit)
            except _RETRYABLE as exc:
                if not is_collision(exc):
                    raise
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # let the other writer finish first
        raise Conflict("the write collided with concurrent writes to the same resources; retry it", code="transient")

    def read(self, work: Callable[[ReadUnit], T], access: Access | None = None) -> T:
        with self.reading(access) as unit:
            return work(unit)


def is_collision(exc: DBAPIError) -> bool:
    """A unique-key race or a serialisation/deadlock failure: safe to run the whole unit again."""
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in {"40001", "40P01"} or "database is locked" in str(exc.orig)


__all__ = ["ReadUnit", "Repository", "SearchPage", "WriteUnit", "is_collision"]
