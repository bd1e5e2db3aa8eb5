"""``GET /metadata``: the CapabilityStatement, generated from the registry and the route table.

It lists exactly what works: every R4 resource type with the interactions the router serves and the
search parameters the search engine can evaluate. https://hl7.org/fhir/R4/capabilitystatement.html
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from fhir_server import __version__
from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.operations import everything, merge
from fhir_server.terminology import code_system, expand, lookup, translate, validate_code
from resources.registry import resource_types, search_params
from smart_auth.discovery import EndpointUrls

INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
SYSTEM_INTERACTIONS = ["transaction", "batch", "search-system", "history-system"]
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata"
OPERATIONS = [
    {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
    {"name": "export", "definition": f"{BULK_DATA}/OperationDefinition/export"},
]
SEARCH_EXTRAS = [
    {"name": "_filter", "type": "special", "documentation": "https://hl7.org/fhir/R4/search_filter.html"},
    {"name": "_has", "type": "special", "documentation": "reverse chaining, nested"},
    {"name": "_list", "type": "special", "documentation": "resources in a List"},
]


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def metadata(ctx: Context, req: FhirRequest) -> FhirResponse:
    """The CapabilityStatement (cached bytes; it only depends on the base URL and whether auth is on)."""
    urls = ctx.auth.urls if ctx.auth is not None else None
    return FhirResponse(200, content=_statement_bytes(ctx.base_url, urls), subsettable=True)


@cache
def _statement_bytes(base_url: str, urls: EndpointUrls | None) -> bytes:
    return orjson.dumps(capability_statement(base_url, urls))


def security(base_url: str, urls: EndpointUrls) -> dict[str, Any]:
    """``rest.security``: SMART on FHIR, with the ``oauth-uris`` extension clients such as the Python
    ``fhirclient`` still read (https://hl7.org/fhir/smart-app-launch/conformance.html)."""
    uris = {"authorize": urls.authorize, "token": urls.token, "introspect": urls.introspect, "revoke": urls.revoke}
    return {
        "cors": True,
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART"}],
        "description": f"SMART App Launch and Backend Services; discovery at {base_url}/.well-known/smart-configuration",
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [{"url": name, "valueUri": uri} for name, uri in uris.items()],
            }
        ],
    }


def capability_statement(base_url: str, urls: EndpointUrls | None = None) -> dict[str, Any]:
    """The statement; with the authorization server's ``urls`` it declares SMART security."""
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [_resource(t) for t in resource_types()],
        "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
        "searchParam": _search_params("Resource"),
        "operation": OPERATIONS,
    }
    if urls is not None:
        rest = {"mode": "server", "security": security(base_url, urls), **rest}
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-21",
        "publisher": "fhir-server project",
        "kind": "instance",
        "extension": [code_system.SUPPORTED_SYSTEM],  # RxNorm, served as CodeSystem/rxnorm
        "instantiates": [f"{BULK_DATA}/CapabilityStatement/bulk-data"],
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json", "application/fhir+xml"],
        "rest": [rest],
    }


# RxNorm terminology operations (fhir_server/terminology), at type level on their resource.
TYPE_OPERATIONS: dict[str, list[dict[str, str]]] = {
    "CodeSystem": [
        {"name": "lookup", "definition": lookup.DEFINITION},
        {"name": "validate-code", "definition": validate_code.CODE_SYSTEM_DEFINITION},
    ],
    "ValueSet": [
        {"name": "expand", "definition": expand.DEFINITION},
        {"name": "validate-code", "definition": validate_code.VALUE_SET_DEFINITION},
    ],
    "ConceptMap": [{"name": "translate", "definition": translate.DEFINITION}],
    "Patient": [
        {"name": "everything", "definition": everything.DEFINITION},
        {"name": "merge", "definition": merge.DEFINITION},
        {"name": "export", "definition": f"{BULK_DATA}/OperationDefinition/patient-export"},
    ],
    "Group": [{"name": "export", "definition": f"{BULK_DATA}/OperationDefinition/group-export"}],
}


def _resource(resource_type: str) -> dict[str, Any]:
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": c} for c in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "multiple",
        "searchInclude": _search_includes(resource_type),
        "searchRevInclude": _search_rev_includes(resource_type),
        "searchParam": _search_params(resource_type),
        "operation": OPERATIONS + TYPE_OPERATIONS.get(resource_type, []),
        **({"documentation": code_system.DOCUMENTATION} if resource_type == "CodeSystem" else {}),
    }


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    """Every standard parameter of the type (``special`` ones, such as Location ``near``, are not evaluated)."""
    found = [
        {"name": code, "definition": param.url, "type": param.type}
        for code, param in sorted(search_params(resource_type).items())
        if param.type != "special"
    ]
    return found + SEARCH_EXTRAS


def _search_includes(resource_type: str) -> list[str]:
    """``_include`` values starting from this type: ``*`` and each reference parameter."""
    params = search_params(resource_type)
    return ["*", *(f"{resource_type}:{code}" for code, p in sorted(params.items()) if p.type == "reference")]


def _search_rev_includes(resource_type: str) -> list[str]:
    """``_revinclude`` values that can reach this type: every reference parameter that may point at it."""
    return [
        f"{source}:{code}"
        for source in resource_types()
        for code, p in sorted(search_params(source).items())
        if p.type == "reference" and (not p.targets or resource_type in p.targets)
    ]
