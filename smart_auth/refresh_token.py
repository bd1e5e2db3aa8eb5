"""The refresh token grant (RFC 6749 section 6) with rotation: every use returns a new refresh token, a
used one presented again revokes the grant, and the scope may narrow (``scopes.covered``) but not widen.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidScopeError, grants

from smart_auth import scopes
from smart_auth.authorization_code import CLIENT_AUTH_METHODS
from smart_auth.grants import RefreshToken, find_refresh_token, revoke_grant, use_refresh_token


class SmartRefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_request_client(self) -> Any:
        self._name_public_client()
        return super()._validate_request_client()

    def _name_public_client(self) -> None:
        """A public app may refresh with only ``grant_type`` and ``refresh_token`` (SMART App Launch 2.x:
        for public apps "authentication is not possible (and thus not required)"; the JS ``fhirclient``
        does so by default): then the refresh token names its client, if that client is public.
        Confidential clients still authenticate."""
        data = self.request.payload.data
        if data.get("client_id") or data.get("client_assertion") or self.request.headers.get("Authorization"):
            return
        token = find_refresh_token(self.server.engine, data.get("refresh_token") or "")
        client = self.server.query_client(token.grant.client_id) if token is not None else None
        if client is not None and client.public:
            data["client_id"] = client.client_id

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        token = find_refresh_token(self.server.engine, refresh_token)
        if token is None or token.is_expired() or token.grant.revoked:
            return None
        if token.used_at is not None:
            revoke_grant(self.server.engine, self.server.revocations, token.grant)  # a replayed refresh token
            return None
        return token

    def _validate_token_scope(self, token: RefreshToken) -> None:
        granted = scopes.split(token.get_scope())
        if not all(scopes.covered(s, granted) for s in scopes.split(self.request.payload.scope)):
            raise InvalidScopeError("a refresh may narrow the granted scope but not widen it")

    def authenticate_user(self, refresh_token: RefreshToken) -> str | None:
        return refresh_token.grant.login

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token: RefreshToken = self.request.refresh_token
        if not use_refresh_token(self.server.engine, token):
            revoke_grant(self.server.engine, self.server.revocations, token.grant)
            raise InvalidGrantError("the refresh token has already been used")
        scope = " ".join(scopes.split(self.request.payload.scope)) or token.get_scope()
        return 200, self.server.tokens.app_response(token.grant, scope), self.TOKEN_RESPONSE_HEADER
