"""The resource server's side of SMART: a bearer token becomes an ``AccessPolicy`` the storage applies.

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html. A scope permits interaction
letters (``c r u d s``) on a type; the data it reaches is narrowed inside the SQL
(``fhir_server.search.visibility``):

- ``patient/`` scopes: the token's patient compartment (R4 CompartmentDefinition) for the types that
  have one; types outside the Patient compartment (Medication, Practitioner, Organization, ...) are
  shared reference data and stay visible;
- ``user/`` scopes: what the user may see; a user who is a Patient (``fhirUser`` Patient/x) sees that
  patient's compartment, staff see every resource of the granted types;
- ``system/`` scopes: every resource of the granted types (the client's registration bounds them);
- a v2 scope's query (``patient/Observation.rs?category=laboratory``) adds its criteria.

Several scopes on one type add up (any of them lets a resource through).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from starlette.requests import Request

from fhir_server.errors import BadRequest, Forbidden, Unauthorized
from fhir_server.search.criteria import AllOf
from fhir_server.search.query import parse_search
from fhir_server.search.visibility import Grant, Grants
from resources.compartments import compartment_params
from smart_auth.scopes import ResourceScope, resource_scopes
from smart_auth.tokens import AccessToken, InvalidToken, TokenVerifier

PATIENT = "Patient"
WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
WHOLE_TYPE = Grant()  # a grant with neither compartment nor query: every resource of the type


class AuthenticationFailed(Unauthorized):
    """401 with the ``WWW-Authenticate`` challenge RFC 6750 asks for."""

    def __init__(self, diagnostics: str, error: str | None = "invalid_token") -> None:
        super().__init__(diagnostics)
        challenge = 'Bearer realm="fhir"'
        if error:
            challenge += f', error="{error}", error_description="{diagnostics}"'
        self.headers = {"WWW-Authenticate": challenge}


@dataclass
class AccessPolicy:
    """What one access token lets its bearer do and see."""

    token: AccessToken
    scopes: tuple[ResourceScope, ...]
    _grants: dict[tuple[str, str], Grants] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, token: AccessToken) -> AccessPolicy:
        """The policy of ``token``, kept while the token is in use, so its per-type grants are computed once
        rather than on every request."""
        return _policy(token)

    @property
    def patient(self) -> str | None:
        """The patient whose compartment ``user/`` scopes stand for: the user's own, when a Patient."""
        fhir_user = self.token.fhir_user or ""
        return fhir_user.split("/", 1)[1] if fhir_user.startswith(f"{PATIENT}/") else None

    def permits(self, interaction: str, resource_type: str) -> bool:
        """Whether any scope allows ``interaction`` on ``resource_type`` (``*``: on some type)."""
        if resource_type == "*":
            return any(interaction in s.permissions for s in self.scopes)
        return self.grants(interaction, resource_type) != ()

    def grants(self, interaction: str, resource_type: str) -> Grants:
        key = (interaction, resource_type)
        if key not in self._grants:
            self._grants[key] = self._compute(interaction, resource_type)
        return self._grants[key]

    def require(self, interaction: str, resource_type: str | None) -> None:
        """403 unless the token allows ``interaction`` on the type (None: on some type)."""
        if not self.permits(interaction, resource_type or "*"):
            what = f"{resource_type} resources" if resource_type else "any resources"
            raise Forbidden(
                f"the access token's scopes ({self.token.scope or 'none'}) do not permit to {WORDS[interaction]} {what}"
            )

    def _compute(self, interaction: str, resource_type: str) -> Grants:
        grants: list[Grant] = []
        for scope in self.scopes:
            if not scope.permits(interaction, resource_type):
                continue
            grant = self._grant(scope, resource_type)
            if grant == WHOLE_TYPE:
                return None
            if grant is not None:
                grants.append(grant)
        return tuple(grants)

    def _grant(self, scope: ResourceScope, resource_type: str) -> Grant | None:
        """What one scope lets through of ``resource_type``; None when it cannot apply (a patient scope
        without a patient in context, a query that is not a search on the type)."""
        if scope.context == "system":
            compartment = None
        else:
            patient = self.token.patient if scope.context == "patient" else self.patient
            if patient is None and scope.context == "patient":
                return None
            in_compartment = resource_type == PATIENT or compartment_params(PATIENT, resource_type)
            # Types outside the Patient compartment (Medication, Organization, ...) are shared reference data.
            compartment = (PATIENT, patient) if patient is not None and in_compartment else None
        if not scope.query:
            return Grant(compartment)
        try:
            criteria = tuple(parse_search(resource_type, list(scope.query)).criteria)
        except BadRequest:
            return None
        if not criteria:
            return None
        return Grant(compartment, criteria[0] if len(criteria) == 1 else AllOf(criteria))


@lru_cache(maxsize=10_000)
def _policy(token: AccessToken) -> AccessPolicy:
    return AccessPolicy(token, resource_scopes(token.scopes))


def bearer_policy(request: Request, verifier: TokenVerifier) -> AccessPolicy:
    """The policy of the request's bearer token; 401 with a challenge when it is missing or invalid."""
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationFailed("this server requires an access token (Authorization: Bearer ...)", error=None)
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise AuthenticationFailed("the Authorization header must be 'Bearer <access token>'", "invalid_request")
    try:
        return AccessPolicy.of(verifier.verify(credentials.strip()))
    except InvalidToken as exc:
        raise AuthenticationFailed(str(exc)) from exc
