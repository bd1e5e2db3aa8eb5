"""Grants (one authorization of a client by a user) and their refresh tokens.

Refresh tokens rotate (https://datatracker.ietf.org/doc/html/draft-ietf-oauth-security-topics#section-4.14):
each use marks the token used and issues a new one; a used token presented again means it leaked, so the
whole grant is revoked, and with it every access token issued under it (``grant:<id>`` in the revocation
store, which every worker checks).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import Engine, delete, insert, select, update

from fhir_server.storage.model import utc_now
from smart_auth import lifetimes
from smart_auth.credentials import digest, new_secret
from smart_auth.revocation import Revocations
from smart_auth.schema import auth_grant, auth_refresh_token


@dataclass(frozen=True)
class Grant:
    grant_id: str
    client_id: str
    login: str | None
    scope: str
    context: dict[str, Any]
    expires_at: datetime
    revoked: bool = False


@dataclass(frozen=True)
class RefreshToken(TokenMixin):
    token_hash: str
    grant: Grant
    scope: str
    expires_at: datetime
    used_at: datetime | None

    def check_client(self, client: Any) -> bool:
        return bool(self.grant.client_id == client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.expires_at - utc_now()).total_seconds())

    def is_expired(self) -> bool:
        return self.expires_at <= utc_now()

    def is_revoked(self) -> bool:
        return self.grant.revoked or self.used_at is not None


def new_grant_id() -> str:
    return uuid.uuid4().hex


def create_grant(
    engine: Engine,
    client_id: str,
    login: str | None,
    scope: str,
    context: dict[str, Any],
    lifetime: timedelta,
    *,
    grant_id: str,
) -> Grant:
    now = utc_now()
    grant = Grant(grant_id, client_id, login, scope, context, now + lifetime)
    with engine.begin() as conn:
        conn.execute(delete(auth_grant).where(auth_grant.c.expires_at < now))
        conn.execute(
            insert(auth_grant),
            {
                "grant_id": grant.grant_id,
                "client_id": client_id,
                "login": login,
                "scope": scope,
                "context": orjson.dumps(context).decode(),
                "created_at": now,
                "expires_at": grant.expires_at,
                "revoked": False,
            },
        )
    return grant


def issue_refresh_token(engine: Engine, grant: Grant) -> str:
    """A new refresh token for ``grant`` (valid until the grant expires)."""
    value = new_secret()
    now = utc_now()
    with engine.begin() as conn:
        conn.execute(delete(auth_refresh_token).where(auth_refresh_token.c.expires_at < now))
        conn.execute(
            insert(auth_refresh_token),
            {
                "token_hash": digest(value),
                "grant_id": grant.grant_id,
                "scope": grant.scope,
                "created_at": now,
                "expires_at": grant.expires_at,
                "used_at": None,
            },
        )
    return value


def find_refresh_token(engine: Engine, value: str) -> RefreshToken | None:
    """The refresh token ``value`` names with its grant, whatever its state; None when unknown."""
    token, grant = auth_refresh_token, auth_grant
    stmt = (
        select(
            token.c.token_hash,
            token.c.scope.label("token_scope"),
            token.c.expires_at.label("token_expires_at"),
            token.c.used_at,
            grant,
        )
        .join(grant, grant.c.grant_id == token.c.grant_id)
        .where(token.c.token_hash == digest(value))
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    return RefreshToken(row["token_hash"], _grant(row), row["token_scope"], row["token_expires_at"], row["used_at"])


def find_grant(engine: Engine, grant_id: str) -> Grant | None:
    with engine.connect() as conn:
        row = conn.execute(select(auth_grant).where(auth_grant.c.grant_id == grant_id)).mappings().first()
    return _grant(row) if row else None


def use_refresh_token(engine: Engine, token: RefreshToken) -> bool:
    """Mark ``token`` used; False when it had been used already (a replay)."""
    table = auth_refresh_token
    stmt = update(table).where(table.c.token_hash == token.token_hash, table.c.used_at.is_(None))
    with engine.begin() as conn:
        return conn.execute(stmt.values(used_at=utc_now())).rowcount == 1


def revoke_grant(engine: Engine, revocations: Revocations, grant: Grant) -> None:
    """End ``grant``: its refresh tokens stop working and so do access tokens issued under it, at once."""
    with engine.begin() as conn:
        conn.execute(update(auth_grant).where(auth_grant.c.grant_id == grant.grant_id).values(revoked=True))
        conn.execute(
            update(auth_refresh_token)
            .where(auth_refresh_token.c.grant_id == grant.grant_id, auth_refresh_token.c.used_at.is_(None))
            .values(used_at=utc_now())
        )
    until = max(grant.expires_at, utc_now()) + timedelta(seconds=lifetimes.APP_ACCESS_TOKEN)
    revocations.revoke(f"grant:{grant.grant_id}", until)


def _grant(row: Any) -> Grant:
    return Grant(
        row["grant_id"],
        row["client_id"],
        row["login"],
        row["scope"],
        orjson.loads(row["context"]),
        row["expires_at"],
        bool(row["revoked"]),
    )
