"""Finding the Reference elements of a resource, wherever they sit (nested elements, contained resources,
the parts of a Parameters): https://hl7.org/fhir/R4/references.html
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def reference_elements(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``node`` with a string ``reference``; the caller may rewrite it while iterating.

    Iterative, not recursive: the nesting depth is whatever the client sent.
    """
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if isinstance(item.get("reference"), str):
                yield item
            pending.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            pending.extend(v for v in item if isinstance(v, dict | list))
