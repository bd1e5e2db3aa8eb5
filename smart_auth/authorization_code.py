"""The authorization code grant as SMART App Launch 2.0 wants it: PKCE with S256 mandatory
(https://hl7.org/fhir/smart-app-launch/app-launch.html#considerations-for-pkce-support), ``aud`` naming
this FHIR server, and a code that works once (a second exchange revokes what the first one got).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge

from smart_auth.codes import AuthorizationCode, claim_code, find_code, save_code
from smart_auth.grants import find_grant, new_grant_id, revoke_grant

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class S256CodeChallenge(CodeChallenge):
    """authlib's PKCE extension with ``plain`` and a missing challenge refused (it allows both)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant: Any, redirect_uri: Any) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class AudienceCheck:
    """The ``aud`` parameter must be this server's FHIR base URL, so a token is never minted for another."""

    def __init__(self, audience: str) -> None:
        self.audience = audience

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate_audience)

    def validate_audience(self, grant: Any, result: Any) -> None:
        aud = grant.request.payload.data.get("aud")
        if not aud or aud.rstrip("/") != self.audience:
            raise InvalidRequestError(f"aud must be this FHIR server's base URL, {self.audience}")


class SmartAuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        save_code(
            self.server.engine,
            code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            login=request.user.login,
            context=request.launch_context,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
        )

    def query_authorization_code(self, code: str, client: Any) -> AuthorizationCode | None:
        found = find_code(self.server.engine, code, client.client_id)
        if found is not None and found.grant_id is not None:
            self._revoke(found.grant_id)  # a code used twice was stolen: end what it granted
            return None
        return found

    def authenticate_user(self, authorization_code: AuthorizationCode) -> str | None:
        return authorization_code.login

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client, code = self.request.client, self.request.authorization_code
        grant_id = new_grant_id()
        if code.login is None or not claim_code(self.server.engine, code, grant_id):
            raise InvalidGrantError("the authorization code has already been used")
        tokens = self.server.tokens
        grant = tokens.grant(grant_id, client, code.login, code.scope, code.context)
        return 200, tokens.app_response(grant, code.scope, nonce=code.context.get("nonce")), self.TOKEN_RESPONSE_HEADER

    def _revoke(self, grant_id: str) -> None:
        grant = find_grant(self.server.engine, grant_id)
        if grant is not None:
            revoke_grant(self.server.engine, self.server.revocations, grant)
