"""Compile a ``SearchQuery`` into SQL over the resource and index tables.

Each criterion becomes a condition on a row of ``resource``: a parameter is
``pk IN (SELECT resource_pk FROM idx_<type> WHERE param = ... AND (v1 OR v2))`` (uncorrelated: the index
drives the lookup), a chain is ``pk IN`` the references whose targets' ids satisfy the inner criterion,
``_has`` is ``id IN`` the targets of the matching sources' references. Pages are cut by keyset on the
sort keys and ``pk`` (never OFFSET), so links stay right while others write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    and_,
    any_,
    case,
    false,
    func,
    not_,
    or_,
    select,
    true,
    tuple_,
)

from fhir_server.errors import BadRequest
from fhir_server.search import codes
from fhir_server.search.criteria import AllOf, AnyOf, Chain, Criterion, Has, Match, Not
from fhir_server.search.params import date, narrative, token
from fhir_server.search.params.by_type import VALUE_CLAUSES
from fhir_server.search.params.composite import component_param
from fhir_server.search.query import Cursor, SearchQuery, SortKey
from fhir_server.search.scope import Scope, uncorrelated
from fhir_server.search.values import CODE_SET_MODIFIERS, composite_parts, of_type_parts, value_clause
from fhir_server.search.visibility import Grant, Visibility
from fhir_server.storage.engine import is_sqlite
from fhir_server.storage.schema import INDEX_TABLES, idx_reference, idx_token, resource
from resources.compartments import compartment_params
from resources.registry import resource_types

# The index column a sort key reads per parameter type: (ascending: lowest, descending: highest).
SORT_COLUMNS = {
    "date": ("low", "high"),
    "string": ("norm", "norm"),
    "token": ("code", "code"),
    "number": ("value", "value"),
    "quantity": ("value", "value"),
    "reference": ("target_id", "target_id"),
    "uri": ("uri", "uri"),
}
# Modifiers answered as "not (the positive test)": resources with no matching value at all.
NEGATIONS = {"not": None, "not-in": "in"}


@dataclass(frozen=True)
class Compiler:
    """Turns criteria into conditions; ``conn`` answers terminology questions (``:in``, ``:below``).

    With a ``visibility``, every set of resources a statement reaches (the matches, chain targets, ``_has``
    sources) is cut to what the reader may see.
    """

    conn: Connection
    partition: str
    visibility: Visibility | None = None

    def condition(self, found: Criterion, types: Sequence[str] | None, row: FromClause) -> ColumnElement[bool]:
        """The criterion as a condition on ``row`` (the resource table or an alias of it)."""
        match found:
            case Match():
                return self._match(found, Scope(self.partition, tuple(types) if types else None), row)
            case Chain():
                return self._chain(found, types, row)
            case Has():
                return self._has(found, types, row)
            case AllOf():
                return and_(*(self.condition(i, types, row) for i in found.items))
            case AnyOf():
                return or_(*(self.condition(i, types, row) for i in found.items))
            case Not():
                return not_(self.condition(found.item, types, row))

    # -- one parameter --------------------------------------------------------------------------------
    def _match(self, found: Match, scope: Scope, row: FromClause) -> ColumnElement[bool]:
        try:
            return self._match_values(found, scope, row)
        except ValueError as exc:
            raise BadRequest(f"invalid value for parameter '{found.name}': {exc}", expression=found.name) from exc

    def _match_values(self, found: Match, scope: Scope, row: FromClause) -> ColumnElement[bool]:
        if found.type == "special":
            return self._special(found, scope, row)
        if found.modifier == "missing":
            present: ColumnElement[bool] = row.c.pk.in_(self._rows(found.type, found.name, scope, true()))
            if found.type == "reference":  # a Reference may hold only an identifier
                present = or_(present, row.c.pk.in_(self._rows("token", f"{found.name}:identifier", scope, true())))
            return or_(*(not_(present) if v == "true" else present for v in found.values))
        if found.type == "composite":
            return or_(*(self._composite(found.name, v, scope, row) for v in found.values))
        if found.modifier in NEGATIONS:
            positive = Match(found.name, found.type, NEGATIONS[found.modifier], found.values)
            return not_(self._match_values(positive, scope, row))
        if found.modifier == "of-type":
            return or_(*(self._of_type(found.name, v, scope, row) for v in found.values))
        if found.modifier == "identifier":
            condition = or_(*(token.clause(idx_token, None, v) for v in found.values))
            return row.c.pk.in_(self._rows("token", f"{found.name}:identifier", scope, condition))
        return row.c.pk.in_(self._plain_rows(found, scope))

    def _plain_rows(self, found: Match, scope: Scope) -> Select[Any]:
        """The pks of the index rows a plain parameter (no negation, grouping or special rule) matches."""
        table = INDEX_TABLES[found.type]
        try:
            condition = or_(*(self._value(found, table, v) for v in found.values))
        except ValueError as exc:
            raise BadRequest(f"invalid value for parameter '{found.name}': {exc}", expression=found.name) from exc
        return self._rows(found.type, found.name, scope, condition)

    @staticmethod
    def _is_plain(found: Criterion) -> bool:
        """A parameter answered by its index rows alone (those exist only for current, live resources)."""
        return (
            isinstance(found, Match)
            and found.type in INDEX_TABLES
            and found.modifier not in {"missing", "of-type", "identifier", *NEGATIONS}
        )

    def _value(self, found: Match, table: FromClause, value: str) -> ColumnElement[bool]:
        if found.type == "token" and found.modifier in CODE_SET_MODIFIERS:
            return self._code_set(found.modifier, table, value)
        return value_clause(found, table, value)

    def _rows(self, kind: str, param: str, scope: Scope, condition: ColumnElement[bool]) -> Select[Any]:
        table = INDEX_TABLES[kind]
        return uncorrelated(table.c.resource_pk).where(*scope.on(table), table.c.param == param, condition)

    def _code_set(self, modifier: str, table: FromClause, value: str) -> ColumnElement[bool]:
        if modifier == "in":
            found = codes.value_set_codes(self.conn, self.partition, value)
        else:
            system, bar, code = value.rpartition("|")
            lookup = codes.codes_below if modifier == "below" else codes.codes_above
            found = lookup(self.conn, self.partition, (system or None) if bar else None, code)
        return or_(
            table.c.system.in_(sorted(found.systems)) if found.systems else false(),
            tuple_(table.c.system, table.c.code).in_(sorted(found.codes)) if found.codes else false(),
        )

    # -- special parameters -----------------------------------------------------------------------------
    def _special(self, found: Match, scope: Scope, row: FromClause) -> ColumnElement[bool]:
        name = found.name
        if name == "_id":
            ids = or_(*(self._id(v, row) for v in found.values))
            return not_(ids) if found.modifier == "not" else ids
        if name == "_lastUpdated":
            if found.modifier == "missing":
                return false() if "true" in found.values else true()
            return or_(*(date.point_clause(row.c.last_updated, v) for v in found.values))
        if name in {narrative.TEXT, narrative.CONTENT}:
            return or_(*(narrative.words_clause(name, v, scope, row.c.pk) for v in found.values))
        return or_(*(self._list(v, scope, row) for v in found.values))

    @staticmethod
    def _id(value: str, row: FromClause) -> ColumnElement[bool]:
        """An id, or (internally, for a compartment's owner) ``Type/id``."""
        resource_type, slash, id = value.rpartition("/")
        return and_(row.c.resource_type == resource_type, row.c.id == id) if slash else row.c.id == value

    def _list(self, list_id: str, scope: Scope, row: FromClause) -> ColumnElement[bool]:
        """``_list=id``: the resources List/id names in its entries."""
        listed = resource.alias("listed")
        list_pk = uncorrelated(listed.c.pk).where(
            listed.c.partition == self.partition, listed.c.resource_type == "List", listed.c.id == list_id
        )
        items = uncorrelated(idx_reference.c.target_type, idx_reference.c.target_id).where(
            idx_reference.c.partition == self.partition,
            idx_reference.c.resource_type == "List",
            idx_reference.c.param == "item",
            idx_reference.c.resource_pk.in_(list_pk.scalar_subquery()),
        )
        return tuple_(row.c.resource_type, row.c.id).in_(items)

    # -- composites ---------------------------------------------------------------------------------------
    def _composite(self, name: str, value: str, scope: Scope, row: FromClause) -> ColumnElement[bool]:
        """``a$b``: rows of each component with one ``grp`` (https://hl7.org/fhir/R4/search.html#composite)."""
        tests = [
            (param.type, component_param(name, i), lambda t, p=param.type, v=part: VALUE_CLAUSES[p](t, None, v))
            for i, (param, part) in enumerate(composite_parts(name, value, scope.resource_types))
        ]
        return row.c.pk.in_(self._grouped(tests, scope))

    def _of_type(self, name: str, value: str, scope: Scope, row: FromClause) -> ColumnElement[bool]:
        """``identifier:of-type=system|code|value``: one Identifier with that type and value."""
        system, code, identifier = of_type_parts(value)
        tests = [
            ("token", f"{name}:of-type$0", lambda t: token.clause(t, None, f"{system}|{code}")),
            ("token", f"{name}:of-type$1", lambda t: t.c.code == identifier),
        ]
        return row.c.pk.in_(self._grouped(tests, scope))

    def _grouped(self, tests: list[tuple[str, str, Any]], scope: Scope) -> Select[Any]:
        """Resources with one row per test sharing a ``grp``: (table kind, param, condition builder)."""
        tables = [INDEX_TABLES[kind].alias(f"c{i}") for i, (kind, _, _) in enumerate(tests)]
        first = tables[0]
        conditions: list[ColumnElement[bool]] = []
        for table, (_, param, build) in zip(tables, tests, strict=True):
            conditions += [*scope.on(table), table.c.param == param, build(table)]
            if table is not first:
                conditions += [table.c.resource_pk == first.c.resource_pk, table.c.grp == first.c.grp]
        return uncorrelated(first.c.resource_pk).where(*conditions)

    # -- chains -----------------------------------------------------------------------------------------
    def _one_of(self, column: Any, ids: Select[Any]) -> ColumnElement[bool]:
        """``column IN (ids)``; on PostgreSQL ``= ANY(ARRAY(ids))``, which runs ``ids`` once.

        The ids of a chain's targets or of ``_has`` targets are few, and computing them once keeps the
        plan safe whatever the statistics: as a nested ``IN`` the planner may rerun the inner subquery per
        outer row (minutes for a two-level chain on a freshly loaded database).
        """
        if is_sqlite(self.conn):
            return column.in_(ids)
        return column == any_(func.array(ids.distinct().scalar_subquery()))

    def _chain(self, found: Chain, types: Sequence[str] | None, row: FromClause) -> ColumnElement[bool]:
        """``ref.name=x``: references to targets (of each allowed type) whose id satisfies the rest."""
        targets = []
        for target_type in found.target_types:
            target = resource.alias(f"t_{target_type.lower()}")
            ids = uncorrelated(target.c.id).where(
                target.c.partition == self.partition,
                target.c.resource_type == target_type,
                target.c.deleted == false(),
                self.condition(found.inner, (target_type,), target),
                self.visible((target_type,), target),
            )
            targets.append(
                and_(idx_reference.c.target_type == target_type, self._one_of(idx_reference.c.target_id, ids))
            )
        scope = Scope(self.partition, tuple(types) if types else None)
        refs = uncorrelated(idx_reference.c.resource_pk).where(
            *scope.on(idx_reference), idx_reference.c.param == found.name, or_(*targets)
        )
        return row.c.pk.in_(refs)

    def _has(self, found: Has, types: Sequence[str] | None, row: FromClause) -> ColumnElement[bool]:
        """``_has:Source:ref:name=x``: this resource is the target of a matching Source's ``ref``."""
        source = resource.alias(f"s_{found.source_type.lower()}")
        restricted = self.visibility is not None and self.visibility.restricts(found.source_type)
        sources = (
            self._plain_rows(found.inner, Scope(self.partition, (found.source_type,)))
            if isinstance(found.inner, Match) and self._is_plain(found.inner) and not restricted
            else uncorrelated(source.c.pk).where(
                source.c.partition == self.partition,
                source.c.resource_type == found.source_type,
                source.c.deleted == false(),
                self.condition(found.inner, (found.source_type,), source),
                self.visible((found.source_type,), source),
            )
        )
        ref = idx_reference.alias(f"h_{found.source_type.lower()}")
        scope = [
            ref.c.partition == self.partition,
            ref.c.resource_type == found.source_type,
            ref.c.param == found.name,
            ref.c.resource_pk.in_(sources),
        ]
        if types and len(types) == 1:
            return self._one_of(row.c.id, uncorrelated(ref.c.target_id).where(*scope, ref.c.target_type == types[0]))
        return tuple_(row.c.resource_type, row.c.id).in_(uncorrelated(ref.c.target_type, ref.c.target_id).where(*scope))

    # -- what the reader may see --------------------------------------------------------------------------
    def visible(self, types: Sequence[str] | None, row: FromClause) -> ColumnElement[bool]:
        """The resources of ``types`` (None: every type) on ``row`` that the visibility lets through."""
        if self.visibility is None:
            return true()
        candidates = list(types) if types else resource_types()
        whole: list[str] = []
        compartments: dict[tuple[str, str], list[str]] = {}
        narrowed: list[tuple[str, tuple[Grant, ...]]] = []
        for resource_type in candidates:
            grants = self.visibility.grants(resource_type)
            if grants is None:
                whole.append(resource_type)
            elif len(grants) == 1 and grants[0].criterion is None and grants[0].compartment is not None:
                compartments.setdefault(grants[0].compartment, []).append(resource_type)
            elif grants:
                narrowed.append((resource_type, grants))
        one_type = len(candidates) == 1
        parts: list[ColumnElement[bool]] = []
        if whole:
            parts.append(true() if one_type else row.c.resource_type.in_(whole))
        parts += [self.in_compartment(c, (owner,), in_types, row) for (c, owner), in_types in compartments.items()]
        for resource_type, grants in narrowed:
            granted = or_(*(self._granted(grant, resource_type, row) for grant in grants))
            parts.append(granted if one_type else and_(row.c.resource_type == resource_type, granted))
        return or_(*parts) if parts else false()

    def _granted(self, grant: Grant, resource_type: str, row: FromClause) -> ColumnElement[bool]:
        tests = []
        if grant.compartment is not None:
            compartment, owner = grant.compartment
            tests.append(self.in_compartment(compartment, (owner,), [resource_type], row))
        if grant.criterion is not None:  # a scope's own query: compiled without visibility (no recursion)
            tests.append(replace(self, visibility=None).condition(grant.criterion, (resource_type,), row))
        return and_(*tests) if tests else true()

    def in_compartment(
        self, compartment: str, owners: Sequence[str] | None, types: Sequence[str], row: FromClause
    ) -> ColumnElement[bool]:
        """Resources of ``types`` in the ``compartment`` (``Patient``) of any of ``owners`` (None: of any
        owner at all): one subquery on the reference index for all types, plus the owners themselves."""
        linked = [(t, compartment_params(compartment, t)) for t in types]
        by_type = [and_(idx_reference.c.resource_type == t, idx_reference.c.param.in_(ps)) for t, ps in linked if ps]
        members: list[ColumnElement[bool]] = []
        if by_type:
            refs = uncorrelated(idx_reference.c.resource_pk).where(
                idx_reference.c.partition == self.partition,
                idx_reference.c.target_type == compartment,
                _among(idx_reference.c.target_id, owners),
                or_(*by_type),
            )
            members.append(row.c.pk.in_(refs))
        if compartment in types:
            members.append(and_(row.c.resource_type == compartment, _among(row.c.id, owners)))
        return or_(*members) if members else false()


def _among(column: Any, values: Sequence[str] | None) -> ColumnElement[bool]:
    """``column`` is one of ``values`` (None: any value)."""
    if values is None:
        return true()
    return column == values[0] if len(values) == 1 else column.in_(values)


# -- the statement ---------------------------------------------------------------------------------------


def search_statement(
    query: SearchQuery,
    conn: Connection,
    partition: str,
    columns: Sequence[Any],
    *,
    count: bool = False,
    visibility: Visibility | None = None,
) -> Select[Any]:
    """The SELECT for one page of ``query`` (one more row than the page, to know if another follows),
    or for its total when ``count``; only resources ``visibility`` lets through."""
    compiler = Compiler(conn, partition, visibility)
    types = query.resource_types
    conditions = [resource.c.partition == partition, resource.c.deleted == false()]
    conditions += Scope(partition, types).on(resource)[1:]
    conditions.append(compiler.visible(types, resource))
    conditions += [_top_level(compiler, c, key, types) for c, key in zip(query.criteria, query.keys, strict=True)]
    if count:
        return select(func.count()).select_from(resource).where(*conditions)
    keys = [sort_expression(k, resource) for k in query.sort]
    inner = select(*columns, *keys).where(*conditions).subquery("page")
    ordered = [*(c for key in query.sort for c in _ordering_columns(inner, key)), (inner.c.pk, False)]
    backward = query.cursor is not None and query.cursor.backward
    stmt = select(inner)
    if query.cursor is not None:
        stmt = stmt.where(_after(ordered, _cursor_values(query.cursor, query.sort), backward))
    stmt = stmt.order_by(*(_direction(column, desc != backward) for column, desc in ordered))
    return stmt.limit(query.count + 1) if query.count is not None else stmt


def _top_level(compiler: Compiler, found: Criterion, key: str, types: Sequence[str] | None) -> ColumnElement[bool]:
    """One query parameter's condition; an error found while building it names that parameter."""
    try:
        return compiler.condition(found, types, resource)
    except BadRequest as error:
        issue = error.issues[0]
        raise BadRequest(issue.diagnostics, expression=key, code=issue.code) from error


def sort_expression(key: SortKey, row: FromClause) -> ColumnElement[Any]:
    """The value a resource sorts by: its lowest value ascending, its highest descending (``k<n>``)."""
    label = sort_label(key)
    if key.name == "_id":
        return row.c.id.label(label)
    if key.name == "_lastUpdated":
        return row.c.last_updated.label(label)
    table = INDEX_TABLES[key.type]
    column = table.c[SORT_COLUMNS[key.type][1 if key.descending else 0]]
    aggregate = func.max(column) if key.descending else func.min(column)
    value = select(aggregate).where(table.c.resource_pk == row.c.pk, table.c.param == key.name).correlate(row)
    return value.scalar_subquery().label(label)


def sort_label(key: SortKey) -> str:
    """The result column of a sort key (for reading cursor values off a row): ``sort_birthdate``."""
    return f"sort_{key.name.strip('_').replace('-', '_')}"


def _ordering_columns(inner: Any, key: SortKey) -> list[tuple[ColumnElement[Any], bool]]:
    """(column, descending) pairs for one key: missing values last, then the value."""
    value = inner.c[sort_label(key)]
    return [(case((value.is_(None), 1), else_=0), False), (value, key.descending)]


def _cursor_values(cursor: Cursor, sort: Sequence[SortKey]) -> list[Any]:
    if len(cursor.keys) != len(sort) or not all(k.accepts(v) for k, v in zip(sort, cursor.keys, strict=True)):
        raise BadRequest("_page does not belong to this search's _sort", expression="_page")
    values: list[Any] = []
    for value in cursor.keys:
        values += [1 if value is None else 0, value]
    return [*values, cursor.pk]


def _after(ordered: list[tuple[ColumnElement[Any], bool]], values: list[Any], backward: bool) -> ColumnElement[bool]:
    """Rows strictly after (``backward``: before) the cursor in the lexicographic order of ``ordered``."""
    alternatives = []
    for i, ((column, descending), value) in enumerate(zip(ordered, values, strict=True)):
        if value is None:
            continue
        equal = [c.is_(None) if v is None else c == v for (c, _), v in zip(ordered[:i], values[:i], strict=True)]
        beyond = column < value if descending != backward else column > value
        alternatives.append(and_(*equal, beyond))
    return or_(*alternatives) if alternatives else false()


def _direction(column: ColumnElement[Any], descending: bool) -> ColumnElement[Any]:
    return column.desc() if descending else column.asc()
