"""Find what a token presented to introspection or revocation is: one of our access tokens (a JWT) or a
refresh token (by digest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws
from sqlalchemy import Engine

from smart_auth.grants import RefreshToken, find_refresh_token
from smart_auth.revocation import Revocations
from smart_auth.tokens import AccessToken, InvalidToken, TokenVerifier


@dataclass(frozen=True)
class IssuedAccessToken:
    """An access token we signed, whatever its state, with the checks RFC 7662 and RFC 7009 ask for."""

    token: AccessToken
    revocations: Revocations
    issued_at: int | None = None

    def check_client(self, client: Any) -> bool:
        return bool(self.token.client_id == client.client_id)

    def is_expired(self) -> bool:
        return self.token.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revocations.is_revoked(*self.token.revocation_keys())


def find_token(
    verifier: TokenVerifier, engine: Engine, value: str, hint: str | None
) -> IssuedAccessToken | RefreshToken | None:
    """The token ``value`` is, trying the hinted kind first (RFC 7009 section 2.1); None when unknown."""
    finders = [_access_token, _refresh_token]
    if hint == "refresh_token":
        finders.reverse()
    for finder in finders:
        if (found := finder(verifier, engine, value)) is not None:
            return found
    return None


def _access_token(verifier: TokenVerifier, engine: Engine, value: str) -> IssuedAccessToken | None:
    try:
        token = verifier.decode(value)
    except InvalidToken:
        return None
    iat = orjson.loads(jws.extract_compact(value.encode()).payload).get("iat")  # signature checked by decode
    return IssuedAccessToken(token, verifier.revocations, iat if isinstance(iat, int) else None)


def _refresh_token(verifier: TokenVerifier, engine: Engine, value: str) -> RefreshToken | None:
    return find_refresh_token(engine, value) if value and "." not in value else None
