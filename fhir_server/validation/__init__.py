"""Resource validation: R4 JSON rules, the fhir.resources R4B models and required code bindings.

``validate_resource(resource, resource_type=None)`` raises :class:`fhir_server.errors.BadRequest` whose
issues name each problem's element by FHIRPath (``Patient.name[0].given[1]``) in plain words.
"""

from .validate import validate_resource

__all__ = ["validate_resource"]
