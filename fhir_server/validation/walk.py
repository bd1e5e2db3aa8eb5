"""The JSON pass: walk a resource along the R4 element tree and report what the model cannot see.

fhir.resources validates R4B models leniently (``"active": "true"``, ``Patient.gender = "xx"``, R4B-only
elements, an empty ``{}`` or a stray ``null`` all pass), and the server stores the client's own JSON, so
this pass holds the R4 JSON rules (https://hl7.org/fhir/R4/json.html): known elements only; arrays
exactly where elements repeat; JSON types of primitives; no empty objects, arrays or strings; nulls only
as placeholders in primitive arrays; required elements; one type per choice element; the R4 lexical
rules R4B misses (ids, uris, uuids, base64); required code bindings; nested resources (``contained``,
``Bundle.entry.resource``) by their own type. With ``check_formats`` it also checks every primitive's
lexical form, for resources no fhir.resources model can validate.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import Issue

from . import diagnostics
from .primitives import format_problem
from .structure import ElementSpec, Node, resource_node

NOT_BLANK = "it must contain non-whitespace characters"  # https://hl7.org/fhir/R4/datatypes.html#string
NO_CONTROL = "it must not contain control characters other than tab, carriage return and line feed"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
EXPECTED_JSON = {
    "boolean": "a JSON boolean (true or false)",
    "integer": "a JSON integer",
    "decimal": "a JSON number",
    "string": "a JSON string",
    "xhtml": "a JSON string",
    "complex": "a JSON object",
    "resource": "a JSON object (a resource)",
}


class ResourceWalk:
    """One walk over a resource's JSON; ``issues`` collects every problem found."""

    def __init__(self, check_formats: bool) -> None:
        self.check_formats = check_formats
        self.issues: list[Issue] = []
        self.resource_types: set[str] = set()  # the resourceType of every resource met, as written

    def resource(self, data: dict[str, Any], expression: str) -> None:
        """A resource, at the root or nested: dispatch on its ``resourceType``."""
        found = data.get("resourceType")
        self.resource_types.add(str(found))
        node = resource_node(found)
        if node is None:
            self.issues.append(diagnostics.unknown_resource_type(f"{expression}.resourceType", found))
            return
        self.object(data, node, expression)

    def object(self, data: dict[str, Any], node: Node, expression: str) -> None:
        """A JSON object: each property against the node's elements, then required and choice rules."""
        if not data:
            self.issues.append(diagnostics.empty_value(expression, data))
            return
        elements = node.elements
        choices: dict[str, set[str]] | None = None
        for key, value in data.items():
            spec = elements.get(key)
            if spec is None:
                if key != "resourceType" or not node.is_resource:
                    self.issues.append(diagnostics.unknown_element(f"{expression}.{key}", key))
                continue
            if spec.choice:
                choices = choices or {}
                choices.setdefault(spec.choice, set()).add(key.removeprefix("_"))
            if spec.array:
                self.array(data, spec, value, f"{expression}.{spec.step}")
            else:
                self.single(spec, value, f"{expression}.{spec.step}")
        for name, step, keys in node.mandatory:
            if data.keys().isdisjoint(keys):
                self.issues.append(diagnostics.missing_element(f"{expression}.{step}", name))
        if choices:
            self.choice_conflicts(choices, expression)

    def choice_conflicts(self, choices: dict[str, set[str]], expression: str) -> None:
        """One issue per choice element given in more than one type."""
        for name, keys in choices.items():
            if len(keys) > 1:
                step = name.removesuffix("[x]")
                self.issues.append(diagnostics.choice_conflict(f"{expression}.{step}", name, sorted(keys)))

    def array(self, data: dict[str, Any], spec: ElementSpec, value: Any, expression: str) -> None:
        """A repeating element: a non-empty JSON array; nulls only where the partner array has an entry."""
        if type(value) is not list:
            self.issues.append(diagnostics.wrong_json_type(expression, value, "a JSON array"))
            return
        if not value:
            self.issues.append(diagnostics.empty_value(expression, value))
            return
        partner = data.get(spec.partner) if spec.partner else None
        for index, item in enumerate(value):
            if item is not None:
                self.value(spec, item, f"{expression}[{index}]")
            elif not (type(partner) is list and index < len(partner) and partner[index] is not None):
                self.issues.append(diagnostics.misplaced_null(f"{expression}[{index}]", spec.partner))

    def single(self, spec: ElementSpec, value: Any, expression: str) -> None:
        """A non-repeating element: one value, never an array or null."""
        if spec.json_types and type(value) in spec.json_types:
            self.primitive(spec, value, expression)
        elif type(value) is list:
            self.issues.append(diagnostics.wrong_json_type(expression, value, "a single value"))
        elif value is None:
            self.issues.append(diagnostics.misplaced_null(expression, None))
        else:
            self.value(spec, value, expression)

    def value(self, spec: ElementSpec, value: Any, expression: str) -> None:
        """One value of an element: a primitive, an object of a type or a nested resource."""
        if spec.json_types:
            self.primitive(spec, value, expression)
        elif type(value) is not dict:
            self.issues.append(diagnostics.wrong_json_type(expression, value, EXPECTED_JSON[spec.kind]))
        elif spec.node is not None:
            self.object(value, spec.node, expression)
        else:
            self.resource(value, expression)

    def primitive(self, spec: ElementSpec, value: Any, expression: str) -> None:
        """A primitive value: its JSON type, content, required binding, R4 lexical rule and maybe format."""
        if type(value) not in spec.json_types:
            self.issues.append(diagnostics.wrong_json_type(expression, value, EXPECTED_JSON[spec.kind]))
            return
        if type(value) is str:
            if not value or value.isspace():
                self.issues.append(diagnostics.invalid_value(expression, value, spec.fhir_type, NOT_BLANK))
                return
            if not value.isprintable() and _CONTROL.search(value):
                self.issues.append(diagnostics.invalid_value(expression, value, spec.fhir_type, NO_CONTROL))
                return
            if spec.value_set is not None and value not in spec.value_set.allowed:
                self.issues.append(diagnostics.invalid_code(expression, value, spec.value_set))
            if spec.lexical is not None and not spec.lexical.check(value):
                self.issues.append(diagnostics.invalid_value(expression, value, spec.fhir_type, spec.lexical.rule))
                return
        if self.check_formats:
            problem = format_problem(spec.fhir_type, value)
            if problem is not None:
                self.issues.append(diagnostics.invalid_value(expression, value, spec.fhir_type, problem))
