"""Registered OAuth clients (SMART apps, backend services, EHRs) and what each kind may do.

Kinds (https://hl7.org/fhir/smart-app-launch/app-launch.html#support-for-public-and-confidential-apps):
``public`` (no secret; PKCE only), ``confidential-symmetric`` (a client secret, Basic or POST) and
``confidential-asymmetric`` (``private_key_jwt`` with a registered JWKS or JWKS URL). Registration errors
are ``ClientError``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from fhir_server.storage.model import utc_now
from smart_auth import scopes
from smart_auth.credentials import check_password as _check_secret
from smart_auth.credentials import hash_password, new_secret
from smart_auth.schema import auth_client

PUBLIC = "public"
SYMMETRIC = "confidential-symmetric"
ASYMMETRIC = "confidential-asymmetric"
KINDS = (PUBLIC, SYMMETRIC, ASYMMETRIC)

# How each kind authenticates (RFC 7591 token_endpoint_auth_method names).
AUTH_METHODS = {
    PUBLIC: ("none",),
    SYMMETRIC: ("client_secret_basic", "client_secret_post"),
    ASYMMETRIC: ("private_key_jwt",),
}
# client_credentials for symmetric clients is this server's quick-start convenience (README, SMART on FHIR).
GRANT_TYPES = {
    PUBLIC: frozenset({"authorization_code", "refresh_token"}),
    SYMMETRIC: frozenset({"authorization_code", "refresh_token", "client_credentials"}),
    ASYMMETRIC: frozenset({"authorization_code", "refresh_token", "client_credentials"}),
}
# What an app may be granted when registered without --scope: everything but system scopes.
APP_SCOPES = (
    "launch launch/patient launch/encounter openid fhirUser profile offline_access online_access patient/*.* user/*.*"
)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")


class ClientError(ValueError):
    """A registration that cannot be accepted (the message says why)."""


@dataclass(frozen=True)
class Client(ClientMixin):
    """A registered client, as authlib's grants and endpoints expect it."""

    client_id: str
    name: str
    kind: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    scope: tuple[str, ...]
    jwks_uri: str | None
    jwks: dict[str, Any] | None
    ehr_launch: bool

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # SMART apps always send redirect_uri

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes an app launch may grant this client, in request order; the rest dropped
        (system scopes belong to Backend Services, ``client_credentials``)."""
        return " ".join(s for s in scopes.split(scope) if not s.startswith("system/") and scopes.covered(s, self.scope))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.kind == SYMMETRIC and _check_secret(self.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS[self.kind] or (method == "bearer" and endpoint == "introspection")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES[self.kind]

    @property
    def public(self) -> bool:
        return self.kind == PUBLIC


def add_client(
    engine: Engine,
    name: str,
    kind: str,
    *,
    redirect_uris: list[str] | None = None,
    scope: str | None = None,
    jwks_uri: str | None = None,
    jwks: dict[str, Any] | None = None,
    client_id: str | None = None,
    ehr_launch: bool = False,
) -> tuple[Client, str | None]:
    """Register a client; its secret (symmetric clients only) is returned once and stored hashed."""
    client_id = client_id or uuid.uuid4().hex
    _check_registration(kind, client_id, redirect_uris or [], scope, jwks_uri, jwks)
    secret = new_secret() if kind == SYMMETRIC else None
    allowed = " ".join(scopes.split(scope if scope is not None else APP_SCOPES))
    row = {
        "client_id": client_id,
        "name": name,
        "kind": kind,
        "secret_hash": hash_password(secret) if secret else None,
        "redirect_uris": orjson.dumps(redirect_uris or []).decode(),
        "scope": allowed,
        "jwks_uri": jwks_uri,
        "jwks": orjson.dumps(jwks).decode() if jwks else None,
        "ehr_launch": ehr_launch,
        "created_at": utc_now(),
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(auth_client), row)
    except IntegrityError as exc:
        raise ClientError(f"a client with id {client_id!r} is already registered") from exc
    return _client(row), secret


def _check_registration(
    kind: str, client_id: str, redirect_uris: list[str], scope: str | None, jwks_uri: str | None, jwks: Any
) -> None:
    if kind not in KINDS:
        raise ClientError(f"the client type must be one of {', '.join(KINDS)}")
    if not _CLIENT_ID.fullmatch(client_id):
        raise ClientError("a client id is 1 to 128 letters, digits or . _ ~ -")
    for uri in redirect_uris:
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s#]+$", uri):
            raise ClientError(f"redirect URI {uri!r} is not an absolute URI without a fragment")
    unknown = [s for s in scopes.split(scope) if not scopes.is_known(s)]
    if unknown:
        raise ClientError(f"unknown scopes: {' '.join(unknown)}")
    if kind == ASYMMETRIC and not (jwks_uri or jwks):
        raise ClientError("a confidential-asymmetric client needs a JWKS URL or a JWKS")
    if kind != ASYMMETRIC and (jwks_uri or jwks):
        raise ClientError("only confidential-asymmetric clients authenticate with keys")
    if jwks is not None:
        try:
            KeySet.import_key_set(jwks)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise ClientError(f"the JWKS cannot be read: {exc}") from exc


def find_client(engine: Engine, client_id: str) -> Client | None:
    with engine.connect() as conn:
        row = conn.execute(select(auth_client).where(auth_client.c.client_id == client_id)).mappings().first()
    return _client(row) if row else None


def list_clients(engine: Engine) -> list[Client]:
    with engine.connect() as conn:
        rows = conn.execute(select(auth_client).order_by(auth_client.c.created_at)).mappings().all()
    return [_client(row) for row in rows]


def count_clients(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(auth_client)).scalar_one())


def remove_client(engine: Engine, client_id: str) -> bool:
    """Unregister a client (its tokens stop being refreshable; access tokens run out). Whether it existed."""
    with engine.begin() as conn:
        return conn.execute(delete(auth_client).where(auth_client.c.client_id == client_id)).rowcount > 0


def _client(row: Any) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        kind=row["kind"],
        secret_hash=row["secret_hash"],
        redirect_uris=tuple(orjson.loads(row["redirect_uris"])),
        scope=tuple(scopes.split(row["scope"])),
        jwks_uri=row["jwks_uri"],
        jwks=orjson.loads(row["jwks"]) if row["jwks"] else None,
        ehr_launch=bool(row["ehr_launch"]),
    )
