"""The FHIR patch interaction's two patch formats, applied to a resource held as a JSON dict.

- JSON Patch (RFC 6902): https://hl7.org/fhir/R4/http.html#patch
- FHIRPath Patch, a Parameters resource of ``operation`` parameters: https://hl7.org/fhir/R4/fhirpatch.html

Both return a new resource and leave their arguments unchanged. Errors name the failing operation
(``Patch.operation[i]`` / ``Parameters.parameter[i]``) in the diagnostics and the issue expression::

    BadRequest     400  the patch document is malformed: not an array of operations / not a Parameters
                        resource of operation parts, an unknown operation, a missing or mistyped part,
                        a JSON pointer or FHIRPath that cannot be parsed
    Unprocessable  422  the patch is well formed but cannot be applied to this resource: its path selects
                        nothing (or more than one element), a ``test`` fails, a value has the wrong type,
                        or the result would change the resource's ``resourceType`` or ``id``

FHIRPath Patch needs to know which elements repeat, which are choices (``value[x]``) and what type each has.
That comes from the fhir.resources R4B models: checked against the R4 StructureDefinitions, they agree on
every element of every type except Evidence and EvidenceVariable (rewritten in R4B, so not used here), the
18 R4 resources R4B dropped (MedicinalProduct*, Substance{NucleicAcid,Polymer,...}, *EvidenceSynthesis) and
a ``Meta`` variant of ``value[x]``. For those types patching follows the shape of the JSON it finds and
skips type checks.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

import fhirpathpy
import jsonpatch
import jsonpointer
from antlr4 import CommonTokenStream, InputStream, ParseTreeWalker, Token
from antlr4.error.ErrorListener import ErrorListener
from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import BadRequest, FhirError, Unprocessable
from fhir_server.validation.models import REDEFINED_IN_R4B

Resource = dict[str, Any]
Model = type

FHIRPATH_R4 = fhirpath_models["r4"]


# --- public API -----------------------------------------------------------------------------------------


def apply_json_patch(resource: Resource, patch: Any) -> Resource:
    """``resource`` after the RFC 6902 operations of ``patch``, applied in order, all or nothing."""
    if not isinstance(patch, list):
        raise BadRequest("A JSON Patch document must be an array of operations (RFC 6902)", expression="Patch")
    patched: Any = copy.deepcopy(resource)
    for index, operation in enumerate(copy.deepcopy(patch)):
        with _naming(f"Patch.operation[{index}]"):
            patched = _apply_json_operation(patched, operation)
            _check_identity(resource, patched)
    return typing.cast(Resource, patched)


def apply_fhirpath_patch(resource: Resource, parameters: Any) -> Resource:
    """``resource`` after the FHIRPath Patch operations in ``parameters``, applied in order, all or none."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise BadRequest("A FHIRPath Patch document must be a Parameters resource", expression="Parameters")
    entries = parameters.get("parameter", [])
    if not isinstance(entries, list):
        raise BadRequest("Parameters.parameter must be an array", expression="Parameters.parameter")
    patched = copy.deepcopy(resource)
    for index, parameter in enumerate(copy.deepcopy(entries)):
        with _naming(f"Parameters.parameter[{index}]"):
            operation = _read_operation(parameter)
            _OPERATIONS[operation.type](patched, operation)
            _check_identity(resource, patched)
    return patched


@contextmanager
def _naming(where: str) -> Iterator[None]:
    """Re-raise a FHIR error from inside with ``where`` (the operation) prefixed and as its expression."""
    try:
        yield
    except FhirError as error:
        raise type(error)(f"{where}: {error.diagnostics}", expression=where) from error


def _check_identity(original: Resource, patched: Any) -> None:
    """Refuse a patch that turns the resource into another one: its ``resourceType`` and ``id`` are fixed."""
    if not isinstance(patched, dict):
        raise Unprocessable("the patch would replace the resource with something that is not a JSON object")
    for element in ("resourceType", "id"):
        if patched.get(element) != original.get(element):
            before, after = original.get(element), patched.get(element)
            raise Unprocessable(f"a patch may not change the resource's {element} ({before!r} to {after!r})")


# --- JSON Patch ------------------------------------------------------------------------------------------


def _apply_json_operation(document: Any, operation: Any) -> Any:
    """``document`` after one RFC 6902 operation: a malformed one is a 400, one that cannot apply a 422."""
    step = _json_patch_step(operation)
    try:
        return step.apply(document, in_place=True)
    except jsonpatch.InvalidJsonPatch as error:
        raise BadRequest(f"{_describe(operation)} is not a valid JSON Patch operation: {error}") from error
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
        raise Unprocessable(f"{_describe(operation)} cannot be applied: {error}") from error


def _json_patch_step(operation: Any) -> jsonpatch.JsonPatch:
    """A one-operation JSON Patch, its members and JSON pointers checked for syntax."""
    try:
        step = jsonpatch.JsonPatch([operation])
        for member in ("path", "from") if operation["op"] in ("move", "copy") else ("path",):
            jsonpointer.JsonPointer(operation[member])
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError) as error:
        raise BadRequest(f"{_describe(operation)} is not a valid JSON Patch operation: {error}") from error
    return step


def _describe(operation: Any) -> str:
    """A short name for a JSON Patch operation in diagnostics, e.g. ``remove '/name/0'``."""
    if isinstance(operation, dict):
        return f"{operation.get('op')} {operation.get('path')!r}"
    return f"operation {operation!r}"[:100]


# --- FHIR structure, from the fhir.resources R4B models ------------------------------------------------


@dataclass(frozen=True)
class ElementDefinition:
    """A child element of a FHIR type as patching needs it: its JSON name, whether it repeats, the choice
    element it belongs to (``value`` for ``valueQuantity``), and its type: a model for a complex type,
    otherwise the Python types its JSON value may have."""

    key: str
    repeats: bool = False
    choice: str | None = None
    model: Model | None = None
    json_types: tuple[type, ...] = ()


_RESOURCE_TYPE = ElementDefinition("resourceType", json_types=(str,))
_JSON_TYPES: dict[Any, tuple[type, ...]] = {bool: (bool,), int: (int,), Decimal: (int, float, Decimal)}


@cache
def fhir_type_model(type_name: str) -> Model | None:
    """The model class of a FHIR resource type or complex datatype, or None when R4B has no R4 model of it."""
    if type_name in REDEFINED_IN_R4B:
        return None
    try:
        return typing.cast(Model, get_fhir_model_class(type_name))
    except (KeyError, ValueError):
        return None


def element_definition(model: Model, name: str, value_type: str | None = None) -> ElementDefinition:
    """The element ``name`` of ``model``; for a choice element (``value[x]``) its ``value_type`` variant."""
    elements = _elements(model)
    found = elements.get(name) or elements.get(f"{name}{value_type}")
    if found is not None:
        return found
    if any(element.choice == name for element in elements.values()):
        raise Unprocessable(f"{model.__name__}.{name}[x] cannot be of type {value_type or 'an anonymous type'}")
    raise Unprocessable(f"{model.__name__} has no element {name!r}")


@cache
def _elements(model: Model) -> dict[str, ElementDefinition]:
    """Every child element of ``model`` by its JSON name."""
    elements = {"resourceType": _RESOURCE_TYPE}
    for name, field in typing.cast(Any, model).model_fields.items():
        key = field.alias or name
        if not key.startswith("_") and name != "fhir_comments":
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            elements[key] = _element(key, field.annotation, typing.cast(str | None, extra.get("one_of_many")))
    return elements


def _element(key: str, annotation: Any, choice: str | None) -> ElementDefinition:
    """The definition of one model field from its type annotation (``Optional[List[abc.XType]]`` and kin)."""
    annotation = _without_none(annotation)
    repeats = typing.get_origin(annotation) is list
    if repeats:
        annotation = _without_none(typing.get_args(annotation)[0])
    if hasattr(annotation, "get_model_klass"):
        return ElementDefinition(key, repeats, choice, model=annotation.get_model_klass())
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return ElementDefinition(key, repeats, choice, json_types=_JSON_TYPES.get(annotation, (str,)))


def _without_none(annotation: Any) -> Any:
    """``X`` from ``Optional[X]`` / ``X | None``; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return inner
    return annotation


def _json_type_matches(value: Any, json_types: tuple[type, ...]) -> bool:
    """Whether a JSON value has one of ``json_types``, keeping booleans apart from numbers."""
    return isinstance(value, json_types) and isinstance(value, bool) == (bool in json_types)


# --- where elements sit in the resource JSON -----------------------------------------------------------


def _item(array: Any, index: int) -> Any:
    """``array[index]``, or None when there is no such item."""
    return array[index] if isinstance(array, list) and index < len(array) else None


@dataclass
class ElementList:
    """A repeating element: the JSON array ``parent[key]`` and the parallel array of its primitives' ids and
    extensions in ``parent["_" + key]`` (https://hl7.org/fhir/R4/json.html#primitive)."""

    parent: dict[str, Any]
    key: str

    def __len__(self) -> int:
        return len(self.parent.get(self.key) or [])

    def insert(self, index: int, value: Any, extension: Any) -> None:
        """Insert an item (value and primitive extension) before position ``index``."""
        values = self.parent.setdefault(self.key, [])
        if extension is not None or f"_{self.key}" in self.parent:
            extensions = self.parent.setdefault(f"_{self.key}", [])
            extensions.extend([None] * (len(values) - len(extensions)))
            extensions.insert(index, extension)
        values.insert(index, value)
        self._tidy()

    def pop(self, index: int) -> tuple[Any, Any]:
        """Remove the item at ``index`` and return its value and primitive extension."""
        extensions = self.parent.get(f"_{self.key}") or []
        extension = extensions.pop(index) if index < len(extensions) else None
        value = self.parent[self.key].pop(index)
        self._tidy()
        return value, extension

    def _tidy(self) -> None:
        """Drop an array left empty: FHIR JSON has no empty arrays."""
        if not self.parent.get(self.key):
            self.parent.pop(self.key, None)
        if all(extension is None for extension in self.parent.get(f"_{self.key}") or []):
            self.parent.pop(f"_{self.key}", None)


@dataclass
class ElementSlot:
    """Where one element sits: ``parent[key]``, or item ``index`` of that array, with a primitive's id and
    extensions beside it under ``"_" + key``. ``name`` is its FHIRPath name (``value`` for valueQuantity)."""

    parent: dict[str, Any]
    key: str
    index: int | None = None
    name: str = ""

    def get(self) -> tuple[Any, Any]:
        """The element's JSON value and its primitive extension object, each None when absent."""
        value, extension = self.parent.get(self.key), self.parent.get(f"_{self.key}")
        if self.index is None:
            return value, extension
        return _item(value, self.index), _item(extension, self.index)

    def set(self, value: Any, extension: Any) -> None:
        """Put ``value`` (and a primitive's extension object) in this place."""
        if self.index is not None:
            ElementList(self.parent, self.key).pop(self.index)
            ElementList(self.parent, self.key).insert(self.index, value, extension)
            return
        for key, content in ((self.key, value), (f"_{self.key}", extension)):
            if content is None:
                self.parent.pop(key, None)
            else:
                self.parent[key] = content

    def delete(self) -> None:
        """Remove the element (and its primitive extension)."""
        if self.index is None:
            self.set(None, None)
        else:
            ElementList(self.parent, self.key).pop(self.index)


Chain = list[ElementSlot]
_STEP = re.compile(r"(?P<name>\w+)(?:\[(?P<index>\d+)\])?")


def _select(resource: Resource, path: str) -> list[Chain]:
    """The distinct elements of ``resource`` the FHIRPath ``path`` selects, each as the chain of slots
    leading to it from the resource root (an empty chain is the resource itself)."""
    chains: dict[tuple[int, str, int | None], Chain] = {}
    seen_values = set()
    for node in _evaluate(resource, path):
        chain = _locate(resource, node)
        last = chain[-1] if chain else ElementSlot(resource, "")
        place = (id(last.parent), last.key, last.index)
        chains.setdefault(place, chain)
        if not chain or node.data is last.get()[0]:
            seen_values.add(place)
    if any(place not in seen_values and place[2] is not None for place in chains):
        raise Unprocessable(
            f"{path} reaches an item of a repeating primitive through its id or extensions, or by a position "
            "past its values; fhirpathpy cannot place such items reliably, so select the item by its value"
        )
    return list(chains.values())


def _evaluate(resource: Resource, path: str) -> list[Any]:
    """fhirpathpy's result nodes for ``path`` (each knows where it was found: ``propName``)."""
    parsed = _parse_fhirpath(path)
    context = {"resource": resource, "rootResource": resource}
    try:
        return list(fhirpathpy.apply_parsed_path(resource, parsed, context, FHIRPATH_R4, {"returnRawData": True}))
    except Exception as error:  # fhirpathpy raises plain Exceptions for evaluation errors
        raise BadRequest(f"cannot evaluate the FHIRPath {path!r}: {error}") from error


class _RaiseSyntaxErrors(ErrorListener):
    """An ANTLR error listener that refuses the expression; fhirpathpy's own parser recovers silently, so
    ``Patient..name`` would quietly select ``Patient``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise BadRequest(f"the FHIRPath {self.path!r} has a syntax error at position {column}: {msg}")


_NARRATIVE_DIV = re.compile(r"'(?:[^'\\]|\\.)*'|`[^`]*`|(?<=\.)div\b")


def _parse_fhirpath(path: str) -> Any:
    """fhirpathpy's syntax tree for ``path``, which must be one whole FHIRPath expression. ``.div`` (the
    Narrative element, and a FHIRPath operator) is read as the element, as the reference implementation
    and the official patch tests (``Patient.text.div``) do."""
    escaped = _NARRATIVE_DIV.sub(lambda match: "`div`" if match[0] == "div" else match[0], path)
    lexer = FHIRPathLexer(InputStream(escaped))
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(_RaiseSyntaxErrors(path))
    tree = parser.expression()
    if tokens.LA(1) != Token.EOF:
        raise BadRequest(f"the FHIRPath {path!r} has unexpected text from {tokens.LT(1).text!r} on")
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, tree)
    return listener.parentStack[0]


def _locate(resource: Resource, node: Any) -> Chain:
    """The chain of slots to the element a fhirpathpy result node stands for, read from the node's
    ``propName`` (e.g. ``Patient.contact[0].name``) and checked against the node's data."""
    prop_name = getattr(node, "propName", None)
    if not isinstance(node, ResourceNode) or (prop_name is None and node.data is not resource):
        raise Unprocessable(f"the path selects {_summary(node)}, which is not an element of the resource")
    chain: Chain = []
    container: Any = resource
    for step in (prop_name or "").split(".")[1:]:
        match = _STEP.fullmatch(step)
        if match is None or not isinstance(container, dict):
            raise Unprocessable(f"cannot find {prop_name} in the resource")
        index = None if match["index"] is None else int(match["index"])
        chain.append(ElementSlot(container, _json_key(container, match["name"]), index, match["name"]))
        value, extension = chain[-1].get()
        container = value if isinstance(value, dict) else extension
    if chain and all(node.data is not content for content in chain[-1].get()):
        raise Unprocessable(f"cannot find {prop_name} in the resource")
    return chain


def _summary(node: Any) -> str:
    """A short description of a FHIRPath result for diagnostics."""
    return repr(getattr(node, "data", node))[:60]


def _json_key(container: dict[str, Any], name: str) -> str:
    """The JSON property of element ``name`` in ``container``: ``name`` itself, or a choice's ``nameType``."""
    if name in container or f"_{name}" in container:
        return name
    choices = [key for key in container if key.startswith(name) and key[len(name) : len(name) + 1].isupper()]
    return choices[0] if len(choices) == 1 else name


def _chain_model(resource: Resource, chain: Chain) -> Model | None:
    """The model of the element at the end of ``chain`` (Element for a primitive's id and extensions)."""
    model = fhir_type_model(str(resource.get("resourceType")))
    for slot in chain:
        element = _elements(model).get(slot.key) if model else None
        value, _ = slot.get()
        if isinstance(value, dict) and "resourceType" in value:
            model = fhir_type_model(str(value["resourceType"]))
        elif element is None:
            return None
        else:
            model = element.model or fhir_type_model("Element")
    return model


def _container(resource: Resource, chain: Chain) -> tuple[dict[str, Any], Model | None]:
    """The JSON object holding the children of the element at the end of ``chain``, and its model. A
    primitive's children (id, extension) live in its ``_`` object, made here when it has none."""
    value, extension = chain[-1].get() if chain else (resource, None)
    if not isinstance(value, dict):
        if extension is None:
            extension = {}
            chain[-1].set(value, extension)
        value = extension
    return value, _chain_model(resource, chain)


def _prune(chain: Chain) -> None:
    """Remove the ancestors a delete left empty, innermost first: FHIR JSON has no empty objects."""
    for slot in reversed(chain):
        value, extension = slot.get()
        if value == {}:
            slot.delete()
        elif extension == {}:
            slot.set(value, None)
        else:
            return


# --- FHIRPath Patch: reading the Parameters ------------------------------------------------------------


@dataclass(frozen=True)
class PatchValue:
    """An operation's ``value`` part: a datatype from ``value[x]`` (type ``Quantity`` for ``valueQuantity``)
    or ``resource``, or nested ``part``s, one per child element, for an anonymous type such as
    Patient.contact."""

    type: str | None
    value: Any = None
    extension: Any = None
    parts: list[Any] | None = None


@dataclass(frozen=True)
class PatchOperation:
    """One ``operation`` parameter of a FHIRPath Patch."""

    type: str
    path: str
    name: str = ""
    value: PatchValue | None = None
    index: int = 0
    source: int = 0
    destination: int = 0


_REQUIRED_PARTS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_PART_NAMES = {"type", "path", "name", "value", "index", "source", "destination"}
_VALUE_X = re.compile(r"_?value(?P<type>[A-Z]\w*)")


def _read_operation(parameter: Any) -> PatchOperation:
    """The operation a ``Parameters.parameter`` describes, checked for the parts its type needs."""
    if not isinstance(parameter, dict) or parameter.get("name") != "operation":
        raise BadRequest("each parameter of a FHIRPath Patch must be named 'operation'")
    parts = _parts_by_name(parameter.get("part"))
    operation_type = _primitive_part(parts, "type", str)
    if operation_type not in _REQUIRED_PARTS:
        raise BadRequest(f"unknown operation type {operation_type!r}; use one of {', '.join(_REQUIRED_PARTS)}")
    missing = [name for name in _REQUIRED_PARTS[operation_type] if name not in parts]
    if missing:
        raise BadRequest(f"a {operation_type} operation needs the part(s) {', '.join(missing)}")
    return PatchOperation(
        type=operation_type,
        path=_primitive_part(parts, "path", str),
        name=_primitive_part(parts, "name", str) or "",
        value=_read_value(parts["value"]) if "value" in parts else None,
        index=_primitive_part(parts, "index", int) or 0,
        source=_primitive_part(parts, "source", int) or 0,
        destination=_primitive_part(parts, "destination", int) or 0,
    )


def _parts_by_name(parts: Any) -> dict[str, dict[str, Any]]:
    """An operation's parts by name, each name known and given once."""
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise BadRequest("an operation needs its parts (type, path, ...) as an array of parameters")
    by_name: dict[str, dict[str, Any]] = {}
    for part in parts:
        name = part.get("name")
        if name not in _PART_NAMES:
            raise BadRequest(f"unknown operation part {name!r}; expected {', '.join(sorted(_PART_NAMES))}")
        if name in by_name:
            raise BadRequest(f"the part {name!r} is given more than once")
        by_name[name] = part
    return by_name


def _primitive_part(parts: dict[str, dict[str, Any]], name: str, json_type: type) -> Any:
    """The primitive value of part ``name`` (None when absent), which must have ``json_type``."""
    if name not in parts:
        return None
    content = _read_value(parts[name])
    if not _json_type_matches(content.value, (json_type,)):
        kind = "an integer (valueInteger)" if json_type is int else "a string (valueString or valueCode)"
        raise BadRequest(f"the part {name!r} must be {kind}")
    return content.value


def _read_value(part: dict[str, Any]) -> PatchValue:
    """The content of a part: exactly one of ``value[x]``, ``resource`` or nested ``part``s."""
    value_types = {match["type"] for key in part if (match := _VALUE_X.fullmatch(key))}
    if len(value_types) + ("resource" in part) + ("part" in part) != 1:
        raise BadRequest(f"the part {part.get('name')!r} needs exactly one of value[x], resource or part")
    if "part" in part:
        if not isinstance(part["part"], list):
            raise BadRequest(f"the part {part.get('name')!r} has parts that are not an array")
        return PatchValue(None, parts=part["part"])
    if "resource" in part:
        resource = part["resource"]
        return PatchValue(resource.get("resourceType") if isinstance(resource, dict) else None, resource)
    (value_type,) = value_types
    return PatchValue(value_type, part.get(f"value{value_type}"), part.get(f"_value{value_type}"))


# --- FHIRPath Patch: values ------------------------------------------------------------------------------


def _definition_or(
    model: Model | None, name: str, value_type: str | None, fallback: ElementDefinition
) -> ElementDefinition:
    """``element_definition`` when the model is known, else ``fallback`` (shaped from the JSON found)."""
    return element_definition(model, name, value_type) if model is not None else fallback


def _add_child(container: dict[str, Any], model: Model | None, name: str, content: PatchValue) -> None:
    """Add ``content`` to ``container`` as its element ``name``: appended when the element repeats, set
    when it does not and has no value yet."""
    fallback = ElementDefinition(name, isinstance(container.get(name), list))
    element = _definition_or(model, name, content.type, fallback)
    value = _materialise(content, element)
    if element.repeats:
        children = ElementList(container, element.key)
        children.insert(len(children), value, content.extension)
    elif _present(container, model, element):
        raise Unprocessable(f"{name} already has a value and does not repeat; use replace to change it")
    else:
        ElementSlot(container, element.key).set(value, content.extension)


def _present(container: dict[str, Any], model: Model | None, element: ElementDefinition) -> bool:
    """Whether ``container`` already has a value for ``element`` (in any of a choice's types)."""
    keys = {element.key}
    if model is not None and element.choice:
        keys |= {other.key for other in _elements(model).values() if other.choice == element.choice}
    return any(key in container or f"_{key}" in container for key in keys)


def _materialise(content: PatchValue, element: ElementDefinition) -> Any:
    """The JSON for ``content`` as a value of ``element``, its type checked: fhirpatch.html says servers
    SHALL return an error if the type is wrong."""
    if content.parts is None:
        _check_type(content, element)
        return content.value
    if element.json_types:
        raise Unprocessable(f"{element.key} is a primitive: give it a value[x], not parts")
    value: dict[str, Any] = {}
    for part in content.parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise BadRequest(f"each part of the value for {element.key} needs a name")
        _add_child(value, element.model, part["name"], _read_value(part))
    return value


def _check_type(content: PatchValue, element: ElementDefinition) -> None:
    """Refuse a value whose type cannot go in ``element``; a primitive takes a primitive of its JSON type."""
    if element.json_types:
        if content.value is not None and not _json_type_matches(content.value, element.json_types):
            raise Unprocessable(f"{element.key} is a primitive that cannot take a {content.type} value")
    elif element.model is not None:
        given = fhir_type_model(content.type) if content.type else None
        if given is None or not issubclass(given, element.model):
            expected = element.model.__name__
            raise Unprocessable(f"{element.key} is of type {expected}, not {content.type}")


# --- FHIRPath Patch: the operations ----------------------------------------------------------------------


def _only(chains: list[Chain], operation: PatchOperation, doing: str) -> Chain:
    """The one element an add or replace works on."""
    if not chains:
        raise Unprocessable(f"No content found at {operation.path} when {doing}")
    if len(chains) > 1:
        raise Unprocessable(f"{operation.path} selects {len(chains)} elements; {operation.type} needs exactly one")
    return chains[0]


def _items_of(resource: Resource, operation: PatchOperation, doing: str) -> tuple[ElementList, Chain]:
    """The list whose items ``operation.path`` selects (all of them), and the chain to its first item."""
    chains = _select(resource, operation.path)
    if not chains:
        raise Unprocessable(f"No content found at {operation.path} when {doing}")
    lasts = [chain[-1] if chain else None for chain in chains]
    first = lasts[0]
    items = ElementList(first.parent, first.key) if first is not None and first.index is not None else None
    one_list = all(last and first and last.parent is first.parent and last.key == first.key for last in lasts)
    if items is None or not one_list or len(chains) != len(items):
        raise Unprocessable(f"{operation.path} must select all the items of one repeating element")
    return items, chains[0]


def _add(resource: Resource, operation: PatchOperation) -> None:
    """Add ``name`` to the one element ``path`` selects: append if it repeats, else set it if absent."""
    container, model = _container(resource, _only(_select(resource, operation.path), operation, "adding"))
    _add_child(container, model, operation.name, typing.cast(PatchValue, operation.value))


def _insert(resource: Resource, operation: PatchOperation) -> None:
    """Insert ``value`` into the list ``path`` selects, before position ``index`` (0 to the list's length)."""
    items, chain = _items_of(resource, operation, "inserting")
    if not 0 <= operation.index <= len(items):
        raise Unprocessable(f"index {operation.index} is outside 0..{len(items)}, the list's positions")
    content = typing.cast(PatchValue, operation.value)
    model = _chain_model(resource, chain[:-1])
    element = _definition_or(model, items.key, content.type, ElementDefinition(items.key, repeats=True))
    items.insert(operation.index, _materialise(content, element), content.extension)


def _delete(resource: Resource, operation: PatchOperation) -> None:
    """Delete the element ``path`` selects, if any, and ancestors that leaves empty."""
    chains = _select(resource, operation.path)
    if len(chains) > 1:
        raise Unprocessable(f"{operation.path} selects {len(chains)} elements; only one can be deleted")
    if chains and not chains[0]:
        raise Unprocessable("delete cannot remove the resource itself")
    if chains:
        chains[0][-1].delete()
        _prune(chains[0][:-1])


def _replace(resource: Resource, operation: PatchOperation) -> None:
    """Replace the one element ``path`` selects with ``value`` (for a choice, possibly of another type)."""
    chain = _only(_select(resource, operation.path), operation, "replacing")
    if not chain:
        raise Unprocessable("replace cannot replace the resource itself")
    slot, content = chain[-1], typing.cast(PatchValue, operation.value)
    fallback = ElementDefinition(slot.key, slot.index is not None)
    element = _definition_or(_chain_model(resource, chain[:-1]), slot.name, content.type, fallback)
    value = _materialise(content, element)
    if element.key != slot.key:
        slot.delete()
        slot = ElementSlot(slot.parent, element.key)
    slot.set(value, content.extension)


def _move(resource: Resource, operation: PatchOperation) -> None:
    """Move the item at ``source`` of the list ``path`` selects to position ``destination``."""
    items, _ = _items_of(resource, operation, "moving")
    for part, position in (("source", operation.source), ("destination", operation.destination)):
        if not 0 <= position < len(items):
            raise Unprocessable(f"{part} {position} is outside 0..{len(items) - 1}, the list's positions")
    value, extension = items.pop(operation.source)
    items.insert(operation.destination, value, extension)


_OPERATIONS: dict[str, Callable[[Resource, PatchOperation], None]] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}
