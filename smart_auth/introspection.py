"""Token introspection (RFC 7662; https://hl7.org/fhir/smart-app-launch/token-introspection.html).

The caller authenticates with any valid access token of ours (``Authorization: Bearer``: a resource
server's own token will do) or as a client (Basic, POST secret, ``private_key_jwt``); authlib's endpoint
accepts only Basic. Expired, revoked and unknown tokens are ``{"active": false}``.
"""

from __future__ import annotations

import calendar
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from smart_auth.grants import RefreshToken
from smart_auth.token_lookup import IssuedAccessToken, find_token
from smart_auth.tokens import InvalidToken, TokenVerifier


class SmartIntrospection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["bearer", "client_secret_basic", "client_secret_post", "private_key_jwt"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedAccessToken | RefreshToken | None:
        return find_token(self.server.verifier, self.server.engine, token_string, token_type_hint)

    def check_permission(self, token: Any, client: Any, request: Any) -> bool:
        return True  # any authenticated caller may learn whether a token is active

    def introspect_token(self, token: IssuedAccessToken | RefreshToken) -> dict[str, Any]:
        if isinstance(token, RefreshToken):
            grant = token.grant
            claims: dict[str, Any] = {
                "token_type": "refresh_token",
                "scope": token.scope,
                "client_id": grant.client_id,
                "sub": grant.login,
                "exp": calendar.timegm(token.expires_at.timetuple()),
                "patient": grant.context.get("patient"),
                "encounter": grant.context.get("encounter"),
                "fhirUser": grant.context.get("fhirUser"),
            }
        else:
            access = token.token
            claims = {
                "token_type": "Bearer",
                "scope": access.scope,
                "client_id": access.client_id,
                "sub": access.subject,
                "exp": access.expires_at,
                "iat": token.issued_at,
                "iss": self.server.issuer,
                "aud": self.server.issuer,
                "patient": access.patient,
                "encounter": access.encounter,
                "fhirUser": access.fhir_user,
            }
        if claims["fhirUser"]:
            claims["fhirUser"] = self.server.tokens.fhir_user_url(claims["fhirUser"])
        return {"active": True, **{name: value for name, value in claims.items() if value is not None}}


def bearer_caller(verifier: TokenVerifier) -> Any:
    """A client authentication method for introspection: a valid access token authenticates its client."""

    def authenticate(query_client: Any, request: Any) -> Any:
        scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        try:
            token = verifier.verify(value.strip())
        except InvalidToken as exc:
            raise InvalidClientError(description=f"bearer token refused: {exc}", status_code=401) from exc
        return query_client(token.client_id)

    return authenticate
