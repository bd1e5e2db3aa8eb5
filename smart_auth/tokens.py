"""Access tokens: JWTs signed with the server's key (RS256), checked by every FHIR request.

Claims: ``iss`` (the FHIR base), ``aud`` (the FHIR base), ``sub`` (the user's login, or the client for
Backend Services), ``client_id``, ``scope``, ``exp``, ``iat``, ``jti``, and when present ``grant`` (the
authorization the token came from), ``patient``, ``encounter``, ``fhirUser``.

Checking costs a signature verification the first time a token is seen (about 40 us), then a dictionary
lookup; revocation is looked up on every request, so a revoked token stops at once in every process.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from smart_auth.keys import ALGORITHM, SigningKeys
from smart_auth.revocation import Revocations

CACHE_SIZE = 10_000
LEEWAY = 30  # seconds of clock skew accepted on iat/nbf


class InvalidToken(Exception):
    """A bearer token that must be refused (401); the message says why, for ``WWW-Authenticate``."""


@dataclass(frozen=True)
class AccessToken:
    """What a valid access token grants."""

    client_id: str
    scope: str
    subject: str
    expires_at: int
    jti: str
    grant_id: str | None = None
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    def revocation_keys(self) -> tuple[str, ...]:
        return (f"jti:{self.jti}", f"grant:{self.grant_id}") if self.grant_id else (f"jti:{self.jti}",)

    def claims(self, issuer: str, audience: str, issued_at: int) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": self.subject,
            "client_id": self.client_id,
            "scope": self.scope,
            "iat": issued_at,
            "exp": self.expires_at,
            "jti": self.jti,
        }
        optional = {
            "grant": self.grant_id,
            "patient": self.patient,
            "encounter": self.encounter,
            "fhirUser": self.fhir_user,
        }
        claims.update({name: value for name, value in optional.items() if value is not None})
        return claims


def issue_access_token(
    keys: SigningKeys,
    issuer: str,
    audience: str,
    *,
    client_id: str,
    scope: str,
    subject: str,
    lifetime: int,
    grant_id: str | None = None,
    patient: str | None = None,
    encounter: str | None = None,
    fhir_user: str | None = None,
) -> tuple[str, AccessToken]:
    """A signed access token and what it grants."""
    now = int(time.time())
    token = AccessToken(
        client_id, scope, subject, now + lifetime, uuid.uuid4().hex, grant_id, patient, encounter, fhir_user
    )
    key = keys.ensure()
    encoded = jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, token.claims(issuer, audience, now), key)
    return encoded, token


class TokenVerifier:
    """Checks bearer tokens for one FHIR base: signature, issuer, audience, expiry and revocation."""

    def __init__(self, keys: SigningKeys, revocations: Revocations, issuer: str, audience: str) -> None:
        self.keys = keys
        self.revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self._cache: dict[str, AccessToken] = {}
        self._lock = threading.Lock()

    def verify(self, encoded: str) -> AccessToken:
        """The token's grant, or InvalidToken."""
        token = self._cache.get(encoded)
        if token is None:
            token = self._decode(encoded)
            with self._lock:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[encoded] = token
        if token.expires_at <= time.time():
            raise InvalidToken("the access token has expired")
        if self.revocations.is_revoked(*token.revocation_keys()):
            raise InvalidToken("the access token has been revoked")
        return token

    def decode(self, encoded: str) -> AccessToken:
        """Signature, issuer and audience checked; expiry and revocation not (introspection does those)."""
        return self._cache.get(encoded) or self._decode(encoded)

    def _decode(self, encoded: str) -> AccessToken:
        kid = _kid(encoded)
        try:
            if kid is None:
                raise ValueError("no kid")
            claims = jwt.decode(encoded, self.keys.verification_keys(kid), algorithms=[ALGORITHM]).claims
        except (JoseError, ValueError) as exc:
            raise InvalidToken("the access token is not a token this server issued") from exc
        if claims.get("iss") != self.issuer:
            raise InvalidToken("the access token was issued by another server")
        if claims.get("aud") != self.audience:
            raise InvalidToken(f"the access token is not meant for {self.audience}")
        if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("jti"), str):
            raise InvalidToken("the access token lacks exp or jti")
        if isinstance(claims.get("iat"), int) and claims["iat"] > time.time() + LEEWAY:
            raise InvalidToken("the access token was issued in the future")
        return AccessToken(
            client_id=str(claims.get("client_id", "")),
            scope=str(claims.get("scope", "")),
            subject=str(claims.get("sub", "")),
            expires_at=claims["exp"],
            jti=claims["jti"],
            grant_id=claims.get("grant"),
            patient=claims.get("patient"),
            encounter=claims.get("encounter"),
            fhir_user=claims.get("fhirUser"),
        )


def _kid(encoded: str) -> str | None:
    try:
        kid = jws.extract_compact(encoded.encode()).headers().get("kid")
    except (JoseError, ValueError):
        return None
    return kid if isinstance(kid, str) else None
