"""FHIR errors, raised anywhere and turned into an OperationOutcome response in exactly one handler.

Tree::

    FhirError (status + OperationOutcome issues)
     ├── BadRequest           400  invalid / structure / value / not-supported ...
     ├── Unauthorized          401
     ├── Forbidden             403
     ├── NotFound              404  not-found
     ├── MethodNotAllowed      405
     ├── Conflict              409  conflict
     ├── Gone                  410  deleted
     ├── PreconditionFailed    412  conflict (If-Match / conditional with several matches)
     ├── PayloadTooLarge       413  too-costly
     ├── UnsupportedMediaType  415  not-supported
     └── Unprocessable         422  processing / business-rule
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    """One OperationOutcome.issue: https://hl7.org/fhir/R4/operationoutcome.html"""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = self.expression
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource (as a dict) carrying ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(diagnostics: str, code: str = "informational") -> dict[str, Any]:
    """An OperationOutcome with a single informational issue (for successful outcomes)."""
    return operation_outcome([Issue(code=code, diagnostics=diagnostics, severity="information")])


class FhirError(Exception):
    """An error a client caused or should see; ``status`` is the HTTP status."""

    status = 400
    code = "processing"

    def __init__(
        self,
        diagnostics: str,
        expression: str | list[str] | None = None,
        code: str | None = None,
        issues: list[Issue] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        if issues is None:
            exprs = [expression] if isinstance(expression, str) else list(expression or [])
            issues = [Issue(code=code or self.code, diagnostics=diagnostics, expression=exprs)]
        self.issues = issues

    @property
    def diagnostics(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status = 400
    code = "invalid"


class TooCostly(FhirError):
    """A search that ran past the server's time limit (``FHIR_SEARCH_TIMEOUT_MS``)."""

    status = 400
    code = "too-costly"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    code = "processing"
