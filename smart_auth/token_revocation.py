"""Token revocation (RFC 7009): an access token is revoked until it expires (``jti:<id>``); a refresh
token revokes its whole grant (``grant:<id>``), so access tokens issued under it stop working at once.
Unknown tokens get 200 like known ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint

from smart_auth.grants import RefreshToken, revoke_grant
from smart_auth.token_lookup import IssuedAccessToken, find_token


class SmartRevocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedAccessToken | RefreshToken | None:
        return find_token(self.server.verifier, self.server.engine, token_string, token_type_hint)

    def revoke_token(self, token: IssuedAccessToken | RefreshToken, request: Any) -> None:
        if isinstance(token, RefreshToken):
            revoke_grant(self.server.engine, self.server.revocations, token.grant)
            return
        until = datetime.fromtimestamp(token.token.expires_at, UTC).replace(tzinfo=None)
        self.server.revocations.revoke(f"jti:{token.token.jti}", until)
