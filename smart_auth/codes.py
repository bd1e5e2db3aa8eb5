"""Authorization codes (RFC 6749 section 4.1): one use, short-lived, bound to client, redirect URI and PKCE
challenge, carrying the launch context chosen on the authorization pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin
from sqlalchemy import Engine, delete, insert, select, update

from fhir_server.storage.model import utc_now
from smart_auth import lifetimes
from smart_auth.credentials import digest
from smart_auth.schema import auth_code


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    login: str | None
    context: dict[str, Any]
    code_challenge: str
    code_challenge_method: str
    expires_at: datetime
    grant_id: str | None  # set once exchanged

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


def save_code(
    engine: Engine,
    code: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    login: str,
    context: dict[str, Any],
    code_challenge: str,
    code_challenge_method: str,
) -> None:
    now = utc_now()
    with engine.begin() as conn:
        conn.execute(delete(auth_code).where(auth_code.c.expires_at < now))
        conn.execute(
            insert(auth_code),
            {
                "code_hash": digest(code),
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": scope,
                "login": login,
                "context": orjson.dumps(context).decode(),
                "code_challenge": code_challenge,
                "code_challenge_method": code_challenge_method,
                "created_at": now,
                "expires_at": now + lifetimes.AUTHORIZATION_CODE,
                "grant_id": None,
            },
        )


def find_code(engine: Engine, code: str, client_id: str) -> AuthorizationCode | None:
    """The code issued to ``client_id``, exchanged or not, if it has not expired."""
    table = auth_code
    stmt = select(table).where(table.c.code_hash == digest(code), table.c.client_id == client_id)
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None or row["expires_at"] <= utc_now():
        return None
    fields = {name: row[name] for name in AuthorizationCode.__dataclass_fields__ if name != "context"}
    return AuthorizationCode(**fields, context=orjson.loads(row["context"]))


def claim_code(engine: Engine, code: AuthorizationCode, grant_id: str) -> bool:
    """Mark the code exchanged for ``grant_id``; False when another exchange got there first."""
    table = auth_code
    stmt = update(table).where(table.c.code_hash == code.code_hash, table.c.grant_id.is_(None))
    with engine.begin() as conn:
        return conn.execute(stmt.values(grant_id=grant_id)).rowcount == 1
