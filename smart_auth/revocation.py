"""Revoked tokens, seen by every worker process at once: in Redis when configured, in the database otherwise.

Keys are ``jti:<access token id>`` and ``grant:<grant id>`` (revoking a refresh token revokes its grant,
and with it every access token issued under that grant, RFC 7009 section 2.1). Each entry lives as long as
the tokens it stops would have lived.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from fhir_server.storage.model import utc_now
from smart_auth.schema import auth_revocation

REDIS_PREFIX = "fhir:revoked:"


class Revocations(Protocol):
    def revoke(self, key: str, until: datetime) -> None:
        """Revoke ``key`` until ``until`` (naive UTC), after which the tokens are expired anyway."""

    def is_revoked(self, *keys: str) -> bool:
        """Whether any of ``keys`` is revoked."""


class RedisRevocations:
    """Revocations shared through Redis: one round trip per check."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def revoke(self, key: str, until: datetime) -> None:
        seconds = int((until - utc_now()).total_seconds()) + 1
        if seconds > 0:
            self.client.set(REDIS_PREFIX + key, b"1", ex=seconds)

    def is_revoked(self, *keys: str) -> bool:
        return bool(self.client.exists(*(REDIS_PREFIX + key for key in keys)))


class DatabaseRevocations:
    """Revocations in the ``auth_revocation`` table: one indexed read per check."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def revoke(self, key: str, until: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(auth_revocation).where(auth_revocation.c.expires_at < utc_now()))
            try:
                with conn.begin_nested():
                    conn.execute(insert(auth_revocation), {"key": key, "expires_at": until})
            except IntegrityError:
                pass  # already revoked

    def is_revoked(self, *keys: str) -> bool:
        table = auth_revocation
        stmt = select(table.c.key).where(table.c.key.in_(keys), table.c.expires_at > utc_now()).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None


def revocations(engine: Engine, redis_url: str | None) -> Revocations:
    """Redis when configured (several server processes share it), the database otherwise."""
    return RedisRevocations(redis_url) if redis_url else DatabaseRevocations(engine)
