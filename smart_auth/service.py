"""The SMART authorization service of one server: keys, revocations, the token verifier and its HTTP routes.

``fhir_server.app`` builds one ``SmartAuth`` when authorization is on, mounts ``router`` (authorize,
token, introspection, revocation, JWKS, well-known documents, pages) and gives ``verifier`` to the FHIR
request path.
"""

from __future__ import annotations

from typing import Any

import orjson
from authlib.oauth2.rfc6749 import InvalidRequestError, UnauthorizedClientError
from fastapi import APIRouter
from sqlalchemy import Engine
from starlette.responses import Response

from fhir_server.config import Settings
from fhir_server.storage.repository import Repository
from smart_auth import routes
from smart_auth.authorize import AuthorizationEndpoint
from smart_auth.discovery import EndpointUrls
from smart_auth.http import json_response
from smart_auth.issuance import TokenIssuer
from smart_auth.keys import SigningKeys
from smart_auth.launch import create_launch, launch_context
from smart_auth.records import Records
from smart_auth.revocation import Revocations, revocations
from smart_auth.server import FormRequest, SmartAuthorizationServer
from smart_auth.sessions import Sessions
from smart_auth.tokens import TokenVerifier

WELL_KNOWN_PATH = "/fhir/.well-known"  # smart-configuration, openid-configuration
EHR_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


class SmartAuth:
    """Everything the authorization server and the resource server share."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.keys = SigningKeys(engine)
        self.revocations: Revocations = revocations(engine, settings.redis_url)
        self.issuer = settings.base_url.rstrip("/")
        self.verifier = TokenVerifier(self.keys, self.revocations, self.issuer, self.issuer)
        self.urls = EndpointUrls.under(self.public_root)
        self.tokens = TokenIssuer(engine, self.keys, self.issuer, self.urls.style)
        self.server = SmartAuthorizationServer(
            engine, self.issuer, self.urls.token, self.tokens, self.verifier, self.revocations
        )
        self.records = Records(Repository(engine, settings.partition, settings.base_url))
        self.authorization = AuthorizationEndpoint(
            self.server,
            Sessions(engine),
            self.records,
            engine,
            self.urls.authorize,
            secure_cookie=self.public_root.startswith("https://"),
        )
        self.router = APIRouter()
        routes.install(self)

    def start(self) -> None:
        """On server start: make sure a signing key exists."""
        self.keys.ensure()

    @property
    def public_root(self) -> str:
        """Where the ``/auth`` endpoints live, from the public FHIR base (``http://host:port``)."""
        base = self.issuer
        return base[: -len("/fhir")] if base.endswith("/fhir") else base

    def ehr_launch(self, request: FormRequest, body: Any) -> Response:
        """``POST /auth/launch``: an EHR client registers a launch context and gets its ``launch`` value."""
        client = self.server.authenticate_client(request, EHR_AUTH_METHODS, "launch")
        if not client.ehr_launch:
            raise UnauthorizedClientError("this client is not registered to launch apps (clients add --ehr-launch)")
        context = launch_context(body if body is not None else _form_context(request), self.records)
        return json_response({"launch": create_launch(self.engine, context)}, 201, cors=False)


def _form_context(request: FormRequest) -> dict[str, Any]:
    """The launch context of a form-encoded ``POST /auth/launch``."""
    form = request.form
    context: dict[str, Any] = {
        name: form[name] for name in ("patient", "encounter", "fhirUser", "intent") if form.get(name)
    }
    if "need_patient_banner" in form:
        context["need_patient_banner"] = form["need_patient_banner"].lower() == "true"
    if form.get("fhirContext"):
        try:
            context["fhirContext"] = orjson.loads(form["fhirContext"])
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError("fhirContext must be JSON (a list of objects)") from exc
    return context
