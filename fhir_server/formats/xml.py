"""The FHIR XML format, converted straight to and from the JSON form (a dict) the server keeps.

https://hl7.org/fhir/R4/xml.html: elements in the FHIR namespace and in StructureDefinition order;
primitives as ``<name value="..."/>`` whose ``id`` and extensions are the JSON ``_name`` companion;
``Element.id`` and ``Extension.url`` as attributes; the narrative ``div`` as XHTML (a string in JSON);
a resource inside an element (``contained``, ``Bundle.entry.resource``) wrapped in an element named for
its type. The element table generated from the StructureDefinitions (``resources/generated/elements.py``)
says which elements repeat and how primitives look in JSON, so no pydantic model is involved.

XML is parsed without DTDs, entity expansion or network access; a document with a DOCTYPE is refused.
Decimals keep their precision: a float when it prints back as the same text, else ``decimal.Decimal``
(serialise that as a JSON number, e.g. orjson ``default=lambda d: orjson.Fragment(str(d))``).
"""

from __future__ import annotations

import re
from copy import deepcopy
from decimal import Decimal
from itertools import zip_longest
from typing import Any

from lxml import etree

from fhir_server.errors import BadRequest
from resources.generated.elements import ELEMENTS, RESOURCE_TYPES, Element

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"

_FHIR = "{" + FHIR_NS + "}"
_XHTML_DIV = "{" + XHTML_NS + "}div"
_PRIMITIVE = frozenset({"string", "boolean", "integer", "decimal"})
_VALUE = Element("value", "string", -1, "string", False, False, False, True)
_PRIMITIVE_ELEMENTS = {**ELEMENTS["Element"], "value": _VALUE}
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MARKUP_OR_QUOTE = re.compile(r'(<!--.*?-->|<[^>]*>)|"', re.DOTALL)
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)

Json = dict[str, Any]


def resource_to_xml(resource: Json, pretty: bool = False) -> bytes:
    """The FHIR XML document of a resource in JSON form; ``pretty`` indents the FHIR elements."""
    root = etree.Element(_FHIR + _resource_type(resource, ""), nsmap={None: FHIR_NS})
    _write_resource(root, resource)
    if pretty:
        _indent(root, 0)
    return _DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def xml_to_resource(data: bytes) -> Json:
    """The JSON form of a FHIR XML document; malformed or non-FHIR XML is a BadRequest naming the spot."""
    return _read_resource(_parse(data, ""), "")


# --- JSON -> XML ---------------------------------------------------------------------------------


def _resource_type(resource: Any, path: str) -> str:
    """The resourceType of a JSON resource, which must be a known R4 resource type."""
    resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
    if resource_type not in RESOURCE_TYPES:
        raise BadRequest(f"unknown resourceType {resource_type!r}", expression=path or "resourceType")
    return str(resource_type)


def _write_resource(element: etree._Element, resource: Json) -> None:
    """Fill the element named for the resource type with the resource's elements."""
    resource_type = element.tag[len(_FHIR) :]
    content = {key: value for key, value in resource.items() if key != "resourceType"}
    _write_children(element, content, ELEMENTS[resource_type], resource_type)


def _write_children(element: etree._Element, obj: Json, elements: dict[str, Element], path: str) -> None:
    """Write a JSON object's elements as attributes and child elements, in StructureDefinition order."""
    if not isinstance(obj, dict):
        raise BadRequest(f"{path} must be a JSON object", expression=path)
    for name, definition in _in_order(obj, elements, path):
        child_path = f"{path}.{name}"
        if definition.attribute:
            element.set(name, _xml_value(obj[name], child_path))
        elif definition.kind in _PRIMITIVE:
            _write_primitives(element, name, obj.get(name), obj.get("_" + name), definition, child_path)
        else:
            for item in _items(obj[name], definition, child_path):
                _write_complex(element, name, item, definition, child_path)


def _in_order(obj: Json, elements: dict[str, Element], path: str) -> list[tuple[str, Element]]:
    """The element names in a JSON object (``_name`` companions folded in), sorted into XML order."""
    found: dict[str, Element] = {}
    for key in obj:
        name = key[1:] if key.startswith("_") else key
        definition = elements.get(name)
        if definition is None or (name != key and definition.kind not in _PRIMITIVE):
            raise BadRequest(f"unknown element {path}.{key}", expression=f"{path}.{key}")
        found[name] = definition
    return sorted(found.items(), key=lambda item: item[1].order)


def _items(value: Any, definition: Element, path: str) -> list[Any]:
    """The values of an element as a list: a JSON array for repeating elements, else one value."""
    if definition.array != isinstance(value, list):
        shape = "an array" if definition.array else "a single value, not an array"
        raise BadRequest(f"{path} must be {shape}", expression=path)
    return value if definition.array else [value]


def _write_primitives(
    parent: etree._Element, name: str, values: Any, companions: Any, definition: Element, path: str
) -> None:
    """Write a primitive element, merging each value with its ``_name`` companion (id, extensions)."""
    if not definition.array:
        _write_primitive(parent, name, values, companions, path)
        return
    values = [] if values is None else _items(values, definition, path)
    companions = [] if companions is None else _items(companions, definition, "_" + path)
    for value, companion in zip_longest(values, companions):
        _write_primitive(parent, name, value, companion, path)


def _write_primitive(parent: etree._Element, name: str, value: Any, companion: Any, path: str) -> None:
    """One ``<name id=".." value="..">`` element with its extensions."""
    if value is None and companion is None:
        raise BadRequest(f"{path} has neither a value nor an extension", expression=path)
    element = etree.SubElement(parent, _FHIR + name)
    if companion is not None:
        _write_children(element, companion, ELEMENTS["Element"], path)
    if value is not None:
        element.set("value", _xml_value(value, path))


def _xml_value(value: Any, path: str) -> str:
    """The text of a JSON primitive in an XML attribute: true/false, a float's shortest repr, or str."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if not isinstance(value, (str, int, Decimal)):
        raise BadRequest(f"{path} must be a primitive value", expression=path)
    text = str(value)
    if _NOT_XML_CHAR.search(text):
        raise BadRequest(f"{path} holds a control character that XML cannot carry", expression=path)
    return text


def _write_complex(parent: etree._Element, name: str, value: Any, definition: Element, path: str) -> None:
    """One complex element: the narrative div, a wrapped resource, or a data type / backbone element."""
    if definition.kind == "xhtml":
        parent.append(_xhtml_div(value, path))
        return
    element = etree.SubElement(parent, _FHIR + name)
    if definition.kind == "resource":
        resource = etree.SubElement(element, _FHIR + _resource_type(value, path))
        _write_resource(resource, value)
    else:
        _write_children(element, value, ELEMENTS[definition.type], path)


def _xhtml_div(div: Any, path: str) -> etree._Element:
    """The narrative string parsed as an XHTML ``<div>`` element."""
    if not isinstance(div, str):
        raise BadRequest(f"{path} must be a string of XHTML", expression=path)
    element = _parse(div.encode(), path)
    if element.tag != _XHTML_DIV:
        raise BadRequest(f'{path} must be a <div xmlns="{XHTML_NS}">', expression=path)
    return element


def _indent(element: etree._Element, depth: int) -> None:
    """Indent the FHIR elements two spaces a level; XHTML content is left exactly as it is."""
    if element.tag == _XHTML_DIV or len(element) == 0:
        return
    element.text = "\n" + "  " * (depth + 1)
    for child in element:
        _indent(child, depth + 1)
        child.tail = element.text
    child.tail = "\n" + "  " * depth


# --- XML -> JSON ---------------------------------------------------------------------------------


def _parse(data: bytes, path: str) -> etree._Element:
    """Parse XML safely (no DTD, entity expansion or network); ``path`` names an embedded div."""
    what = path or "the XML document"
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"{what} is not well-formed XML: {exc}", expression=path or None) from None
    if root.getroottree().docinfo.doctype:
        raise BadRequest(f"{what} has a DOCTYPE: DTDs and entities are not allowed in FHIR XML")
    return root


def _read_resource(element: etree._Element, path: str) -> Json:
    """A resource element (the document root, or inside ``contained`` etc.) as a JSON resource."""
    tag = element.tag if isinstance(element.tag, str) else ""
    resource_type = tag[len(_FHIR) :] if tag.startswith(_FHIR) else ""
    if resource_type not in RESOURCE_TYPES:
        problem = "unknown resource type" if resource_type else f"not in the namespace {FHIR_NS}:"
        where = f"line {element.sourceline}: {path}: " if path else f"line {element.sourceline}: "
        raise BadRequest(f"{where}{problem} <{etree.QName(tag).localname}>", expression=path or None)
    resource: Json = {"resourceType": resource_type}
    _read_children(element, resource, ELEMENTS[resource_type], resource_type)
    return resource


def _read_children(element: etree._Element, out: Json, elements: dict[str, Element], path: str) -> None:
    """Read an element's attributes and child elements into ``out`` (a JSON object)."""
    _read_attributes(element, out, elements, path)
    _refuse_text(element.text, element, path)
    primitive_arrays: set[str] = set()
    for child in element:
        _refuse_text(child.tail, element, path)
        if not isinstance(child.tag, str):
            continue
        name = _element_name(child, path)
        definition = elements.get(name)
        if definition is None or definition.attribute:
            raise _error(child, f"{path}.{name}", f"unknown element <{name}> in {path}")
        child_path = f"{path}.{name}"
        if definition.kind in _PRIMITIVE:
            _read_primitive(child, out, name, definition, child_path)
            primitive_arrays.update([name] if definition.array else [])
        else:
            _store(out, name, _read_complex(child, definition, child_path), definition, child, child_path)
    for name in primitive_arrays:
        _drop_empty_list(out, name)
        _drop_empty_list(out, "_" + name)


def _read_attributes(element: etree._Element, out: Json, elements: dict[str, Element], path: str) -> None:
    """Read the attributes that are elements (id, url, a primitive's value); others in no namespace fail."""
    for name, value in element.attrib.items():
        if name.startswith("{"):
            continue
        definition = elements.get(name)
        if definition is None or not definition.attribute:
            raise _error(element, path, f"unknown attribute {name!r} on {path}")
        out[name] = value


def _refuse_text(text: str | None, element: etree._Element, path: str) -> None:
    """FHIR elements hold no text of their own (only XHTML does)."""
    if text and not text.isspace():
        raise _error(element, path, f"unexpected text {text.strip()[:40]!r} in {path}")


def _element_name(child: etree._Element, path: str) -> str:
    """The element's local name: FHIR namespace, or the XHTML namespace for the narrative div."""
    tag = child.tag
    if tag.startswith(_FHIR):
        return tag[len(_FHIR) :]
    if tag == _XHTML_DIV:
        return "div"
    raise _error(child, path, f"element {tag} in {path} is not in the namespace {FHIR_NS}")


def _read_primitive(element: etree._Element, out: Json, name: str, definition: Element, path: str) -> None:
    """Read ``<name value=".." id="..">`` (+ extensions) into ``out[name]`` and ``out["_name"]``."""
    text, companion = _primitive_parts(element, path)
    if text is None and not companion:
        raise _error(element, path, f"{path} has neither a value nor an extension")
    value = None if text is None else _json_value(text, definition.kind, element, path)
    if definition.array:
        out.setdefault(name, []).append(value)
        out.setdefault("_" + name, []).append(companion or None)
        return
    if name in out or "_" + name in out:
        raise _error(element, path, f"{path} repeats, but it is not an array")
    if value is not None:
        out[name] = value
    if companion:
        out["_" + name] = companion


def _primitive_parts(element: etree._Element, path: str) -> tuple[str | None, Json]:
    """A primitive's value attribute and its ``_name`` companion (id, extensions); a bare value is quick."""
    if len(element) == 0 and len(element.attrib) == 1 and not element.text:
        text = element.get("value")
        if text is not None:
            return text, {}
    companion: Json = {}
    _read_children(element, companion, _PRIMITIVE_ELEMENTS, path)
    return companion.pop("value", None), companion


def _json_value(text: str, kind: str, element: etree._Element, path: str) -> Any:
    """A primitive's value attribute as JSON: boolean, integer, decimal number, or string."""
    if kind == "string" and text:
        return text
    if not text:
        raise _error(element, path, f"{path} has an empty value attribute")
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    if kind == "integer" and _INTEGER.fullmatch(text):
        return int(text)
    if kind == "decimal" and _DECIMAL.fullmatch(text):
        return _json_decimal(text)
    raise _error(element, path, f"{path}: {text!r} is not a valid {kind}")


def _json_decimal(text: str) -> int | float | Decimal:
    """A decimal keeping its precision: an int or a float when exact, else a ``Decimal``."""
    if text.lstrip("-").isdigit():
        return int(text)
    number = float(text)
    return number if repr(number) == text else Decimal(text)


def _read_complex(element: etree._Element, definition: Element, path: str) -> Any:
    """A complex element: the narrative div (a string), a wrapped resource, or a JSON object."""
    if definition.kind == "xhtml":
        return _div_string(element, path)
    if definition.kind == "resource":
        return _read_wrapped_resource(element, path)
    value: Json = {}
    _read_children(element, value, ELEMENTS[definition.type], path)
    return value


def _store(out: Json, name: str, value: Any, definition: Element, element: etree._Element, path: str) -> None:
    """Put a complex value under its JSON name: appended for arrays, once for single elements."""
    if definition.array:
        out.setdefault(name, []).append(value)
    elif name in out:
        raise _error(element, path, f"{path} repeats, but it is not an array")
    else:
        out[name] = value


def _drop_empty_list(out: Json, name: str) -> None:
    """Drop a primitive array (values or companions) that holds only nulls."""
    if name in out and all(item is None for item in out[name]):
        del out[name]


def _read_wrapped_resource(element: etree._Element, path: str) -> Json:
    """The one resource inside a ``contained`` / ``resource`` / ``outcome`` element."""
    children = [child for child in element if isinstance(child.tag, str)]
    if len(children) != 1 or element.attrib:
        raise _error(element, path, f"{path} must hold exactly one resource")
    _refuse_text(element.text, element, path)
    _refuse_text(children[0].tail, element, path)
    return _read_resource(children[0], path)


def _div_string(element: etree._Element, path: str) -> str:
    """The narrative XHTML as a string, serialised as the HL7 tools do (``"`` in text as ``&quot;``)."""
    if element.tag != _XHTML_DIV:
        raise _error(element, path, f'{path} must be a <div xmlns="{XHTML_NS}">')
    if len(element.nsmap) > 1:
        element = deepcopy(element)
        etree.cleanup_namespaces(element)
    text = etree.tostring(element, encoding="unicode", with_tail=False)
    return _MARKUP_OR_QUOTE.sub(lambda match: match.group(1) or "&quot;", text)


def _error(element: etree._Element, path: str, message: str) -> BadRequest:
    """A BadRequest naming the line of the XML and the FHIRPath of the element."""
    return BadRequest(f"line {element.sourceline}: {message}", expression=path)
