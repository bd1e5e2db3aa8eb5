"""``private_key_jwt`` client authentication (RFC 7523 section 2.2, SMART Backend Services
https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html).

authlib's ``JWTBearerClientAssertion`` does the claim checks (``iss`` = ``sub`` = a registered client,
``aud`` = the token URL, ``exp``, ``jti``); this subclass pins the algorithms to RS384 and ES384 (joserfc's
defaults refuse them and would accept HS256), caps ``exp`` at five minutes ahead, records each ``jti`` in
``auth_assertion`` to refuse replays, and finds the client's keys by ``kid``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from fhir_server.storage.model import utc_now
from smart_auth import lifetimes
from smart_auth.client_keys import ClientKeys
from smart_auth.clients import Client
from smart_auth.schema import auth_assertion

ALGORITHMS = ("RS384", "ES384")
LEEWAY = 30  # seconds of clock skew


class PrivateKeyJwt(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, engine: Engine, token_url: str, keys: ClientKeys) -> None:
        super().__init__(leeway=LEEWAY)
        self.engine = engine
        self.token_url = token_url
        self.keys = keys

    def get_audiences(self) -> list[str]:
        return [self.token_url]

    def resolve_client_public_key(self, client: Client) -> Callable[[Any], KeySet]:
        return lambda token: self.keys.key_set(client, token.headers().get("kid"))

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(
                description=f"the client assertion is not valid ({exc.error}); it must be signed with "
                "RS384 or ES384 by a key of the client's JWKS",
                status_code=401,
            ) from exc
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        expires = claims.get("exp")
        if not isinstance(expires, int) or expires > time.time() + lifetimes.CLIENT_ASSERTION_MAX + LEEWAY:
            raise InvalidClientError(
                description="the client assertion's exp must be at most 5 minutes in the future", status_code=401
            )
        if claims.get("iss") != claims.get("sub"):
            raise InvalidClientError(description="the client assertion's iss and sub must both be the client id")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        """Record ``jti`` (one use per client while the assertion could be valid); False on a replay."""
        if not isinstance(jti, str) or not jti or len(jti) > 200:
            return False
        now = utc_now()
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(auth_assertion).where(auth_assertion.c.expires_at < now))
                conn.execute(
                    insert(auth_assertion),
                    {"client_id": claims["sub"], "jti": jti, "expires_at": _until(claims["exp"])},
                )
        except IntegrityError:
            return False
        return True


def _until(exp: int) -> datetime:
    """Naive UTC (as stored) of when an assertion expiring at ``exp`` stops being accepted."""
    return datetime.fromtimestamp(exp + LEEWAY, UTC).replace(tzinfo=None)
