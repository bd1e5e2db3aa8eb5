"""The SMART authorization service of one server: keys, revocations, the token verifier and its HTTP routes.

``fhir_server.app`` builds one ``SmartAuth`` when authorization is on, mounts ``router`` (authorize,
token, introspection, revocation, JWKS, well-known documents, pages) and gives ``verifier`` to the FHIR
request path.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Engine

from fhir_server.config import Settings
from smart_auth.keys import SigningKeys
from smart_auth.revocation import Revocations, revocations
from smart_auth.tokens import TokenVerifier

AUTH_PATH = "/auth"  # authorize, token, introspect, revoke, jwks, launch, pages
WELL_KNOWN_PATH = "/fhir/.well-known"  # smart-configuration, openid-configuration


class SmartAuth:
    """Everything the authorization server and the resource server share."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.keys = SigningKeys(engine)
        self.revocations: Revocations = revocations(engine, settings.redis_url)
        self.issuer = settings.base_url.rstrip("/")
        self.verifier = TokenVerifier(self.keys, self.revocations, self.issuer, self.issuer)
        self.router = APIRouter()

    def start(self) -> None:
        """On server start: make sure a signing key exists."""
        self.keys.ensure()

    @property
    def public_root(self) -> str:
        """Where the ``/auth`` endpoints live, from the public FHIR base (``http://host:port``)."""
        base = self.issuer
        return base[: -len("/fhir")] if base.endswith("/fhir") else base
