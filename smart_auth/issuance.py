"""Token responses (https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5): the access token
(minted by ``smart_auth.tokens``), the launch context, an OpenID Connect ``id_token`` when ``openid`` was
granted and a rotating refresh token for ``offline_access`` / ``online_access``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from joserfc import jwt
from sqlalchemy import Engine

from smart_auth import lifetimes, scopes
from smart_auth.clients import Client
from smart_auth.grants import Grant, create_grant, issue_refresh_token
from smart_auth.keys import ALGORITHM, SigningKeys
from smart_auth.tokens import issue_access_token

# Launch-context fields copied from a grant into its token responses (SMART names).
CONTEXT_FIELDS = ("patient", "encounter", "fhirContext", "need_patient_banner", "intent")


class TokenIssuer:
    """Mints the token responses of one server (issuer = audience = the FHIR base URL)."""

    def __init__(self, engine: Engine, keys: SigningKeys, issuer: str, style_url: str) -> None:
        self.engine = engine
        self.keys = keys
        self.issuer = issuer
        self.style_url = style_url

    def grant(self, grant_id: str, client: Client, login: str, scope: str, context: dict[str, Any]) -> Grant:
        """Record the authorization an exchanged code stands for; it lives as long as its refresh tokens."""
        granted = scopes.split(scope)
        lifetime = (
            lifetimes.OFFLINE_GRANT
            if "offline_access" in granted
            else lifetimes.ONLINE_GRANT
            if "online_access" in granted
            else timedelta(seconds=lifetimes.APP_ACCESS_TOKEN)
        )
        stored = {name: value for name, value in context.items() if name != "nonce"}
        return create_grant(self.engine, client.client_id, login, scope, stored, lifetime, grant_id=grant_id)

    def app_response(self, grant: Grant, scope: str, *, nonce: str | None = None) -> dict[str, Any]:
        """Access token (with ``scope``, at most the grant's), context, id token and a new refresh token."""
        context = grant.context
        encoded, _ = issue_access_token(
            self.keys,
            self.issuer,
            self.issuer,
            client_id=grant.client_id,
            scope=scope,
            subject=grant.login or grant.client_id,
            lifetime=lifetimes.APP_ACCESS_TOKEN,
            grant_id=grant.grant_id,
            patient=context.get("patient"),
            encounter=context.get("encounter"),
            fhir_user=context.get("fhirUser"),
        )
        response: dict[str, Any] = {
            "access_token": encoded,
            "token_type": "Bearer",
            "expires_in": lifetimes.APP_ACCESS_TOKEN,
            "scope": scope,
            **{name: context[name] for name in CONTEXT_FIELDS if name in context},
            "need_patient_banner": bool(context.get("need_patient_banner", False)),
            "smart_style_url": self.style_url,
        }
        granted = scopes.split(grant.scope)
        if "openid" in scopes.split(scope) and grant.login:
            response["id_token"] = self.id_token(grant, with_fhir_user="fhirUser" in granted, nonce=nonce)
        if "offline_access" in granted or "online_access" in granted:
            response["refresh_token"] = issue_refresh_token(self.engine, grant)
        return response

    def backend_response(self, client: Client, scope: str) -> dict[str, Any]:
        """A Backend Services token: short-lived, the client as subject, no refresh token."""
        encoded, _ = issue_access_token(
            self.keys,
            self.issuer,
            self.issuer,
            client_id=client.client_id,
            scope=scope,
            subject=client.client_id,
            lifetime=lifetimes.BACKEND_ACCESS_TOKEN,
        )
        return {
            "access_token": encoded,
            "token_type": "Bearer",
            "expires_in": lifetimes.BACKEND_ACCESS_TOKEN,
            "scope": scope,
        }

    def id_token(self, grant: Grant, *, with_fhir_user: bool, nonce: str | None) -> str:
        """An OpenID Connect ID token for the user (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-identity-data)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.login,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + lifetimes.ID_TOKEN,
        }
        if with_fhir_user and grant.context.get("fhirUser"):
            claims["fhirUser"] = self.fhir_user_url(grant.context["fhirUser"])
        if nonce:
            claims["nonce"] = nonce
        key = self.keys.ensure()
        return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, claims, key)

    def fhir_user_url(self, reference: str) -> str:
        """``Practitioner/123`` as the absolute URL the ``fhirUser`` claim carries."""
        return f"{self.issuer}/{reference}"
