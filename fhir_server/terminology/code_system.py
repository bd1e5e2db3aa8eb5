"""The RxNorm CodeSystem resource: https://hl7.org/fhir/R4/codesystem.html

It describes the loaded release (or the embedded seed) for clients: ``version`` is the release's,
``content`` is ``not-present`` (the concepts are served by ``$lookup``, ``$expand`` and ``$validate-code``,
not listed in the resource) and ``property`` lists what ``$lookup`` answers and ``ValueSet`` filters use.
It is stored as an ordinary resource with the fixed id ``rxnorm`` whenever a release or the seed is loaded,
so ``GET CodeSystem/rxnorm`` and ``GET CodeSystem?url=...`` find it like any other resource.
"""

from __future__ import annotations

from typing import Any

from fhir_server.storage.repository import WriteUnit
from fhir_server.terminology.normalize import IMPLICIT_VALUE_SET, RXNORM

CODE_SYSTEM_ID = "rxnorm"
# The R4 core extension a CapabilityStatement uses to name a code system it supports without a value set.
SUPPORTED_SYSTEM = {
    "url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-supported-system",
    "valueUri": RXNORM,
}
DOCUMENTATION = (
    f"RxNorm ({RXNORM}) is the CodeSystem with id '{CODE_SYSTEM_ID}' (version: the loaded release, or the "
    "embedded seed before one is loaded); $lookup and $validate-code answer for it, ValueSet/$expand takes "
    "TTY filters, ConceptMap/$translate maps NDCs to RxCUIs."
)
CODE = "http://hl7.org/fhir/concept-properties"
PROPERTIES: list[dict[str, str]] = [
    {"code": "TTY", "description": "term type of the concept's preferred name (SCD, SBD, IN, BN ...)", "type": "code"},
    {"code": "tty", "description": "term type, as answered by $lookup", "type": "code"},
    {"code": "status", "uri": f"{CODE}#status", "description": "Active, Suppressed or Remapped", "type": "code"},
    {"code": "remapped-from", "description": "the retired RxCUI that was asked for", "type": "code"},
    {"code": "has_ingredient", "description": "RXNREL: an ingredient of the drug", "type": "Coding"},
    {"code": "has_tradename", "description": "RXNREL: a brand of the drug", "type": "Coding"},
    {"code": "has_dose_form", "description": "RXNREL: the drug's dose form", "type": "Coding"},
    {"code": "ndc", "description": "an NDC of the drug (11 digits, RXNSAT)", "type": "string"},
    {"code": "sty", "description": "a semantic type of the concept (RXNSTY)", "type": "string"},
]


def code_system_resource(version: str) -> dict[str, Any]:
    """The CodeSystem resource for the release ``version``."""
    return {
        "resourceType": "CodeSystem",
        "id": CODE_SYSTEM_ID,
        "url": RXNORM,
        "version": version,
        "name": "RxNorm",
        "title": "RxNorm",
        "status": "active",
        "experimental": False,
        "publisher": "National Library of Medicine",
        "description": (
            "RxNorm normalized names for clinical drugs (SAB=RXNORM content, public domain), "
            f"release {version}. All concepts: the implicit value set {IMPLICIT_VALUE_SET}."
        ),
        "caseSensitive": False,
        "valueSet": IMPLICIT_VALUE_SET,
        "content": "not-present",
        "filter": [
            {
                "code": "TTY",
                "description": "concepts whose term type is one of the values",
                "operator": ["=", "in"],
                "value": "a term type, or a comma-separated list of them",
            }
        ],
        "property": PROPERTIES,
    }


def publish_code_system(unit: WriteUnit, version: str) -> None:
    """Write (or update) the CodeSystem resource of ``version`` in ``unit``'s partition."""
    unit.update(code_system_resource(version), CODE_SYSTEM_ID)
