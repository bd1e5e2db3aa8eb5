"""The client credentials grant of SMART Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html): system scopes only, short-lived tokens,
no refresh token.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidScopeError, grants

from smart_auth import scopes

# private_key_jwt is what Backend Services specifies; a client secret is this server's quick-start convenience.
CLIENT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post"]


class BackendServicesGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = scopes.split(self.request.payload.scope)
        granted = [s for s in requested if s.startswith("system/") and scopes.covered(s, self.request.client.scope)]
        if not granted:
            raise InvalidScopeError("request system scopes this client is registered for (e.g. system/*.rs)")
        self.request.scope = " ".join(granted)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        response = self.server.tokens.backend_response(self.request.client, self.request.scope)
        return 200, response, self.TOKEN_RESPONSE_HEADER
