"""The server's token signing keys: generated on first start, kept in the database, published as a JWKS.

The newest unretired key signs access and id tokens (RS256). ``rotate`` makes a new signing key and
retires the old ones; a retired key stays in the JWKS (and verifies) for ``RETIRED_KEPT`` after
retirement, longer than any token it signed lives.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import orjson
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import ColumnElement, Connection, Engine, Row, insert, or_, select, update

from fhir_server.storage.engine import lock_key
from fhir_server.storage.model import utc_now
from smart_auth.schema import auth_signing_key

ALGORITHM = "RS256"
RETIRED_KEPT = timedelta(days=2)
RELOAD_AFTER = 60.0  # seconds: a rotation made by another process (``fhir-server keys rotate``) shows up by then


class SigningKeys:
    """Signing keys of one database, cached in the process and reloaded when an unknown ``kid`` shows up."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._signing: RSAKey | None = None
        self._public: KeySet = KeySet([])
        self._loaded_at = 0.0

    def ensure(self) -> RSAKey:
        """The current signing key, generated (once, whatever the number of workers) if there is none."""
        with self._lock:
            if self._signing is None or time.monotonic() - self._loaded_at > RELOAD_AFTER:
                self._load()
            if self._signing is None:
                with self.engine.begin() as conn:
                    lock_key(conn, "smart-auth:signing-key")
                    if not self._active_rows(conn):
                        conn.execute(insert(auth_signing_key), _new_key_row())
                self._load()
            assert self._signing is not None
            return self._signing

    def rotate(self) -> str:
        """Start signing with a new key; the old ones are retired (still verifying for a while). Its kid."""
        with self.engine.begin() as conn:
            lock_key(conn, "smart-auth:signing-key")
            now = utc_now()
            conn.execute(update(auth_signing_key).where(auth_signing_key.c.retired_at.is_(None)).values(retired_at=now))
            row = _new_key_row()
            conn.execute(insert(auth_signing_key), row)
        with self._lock:
            self._load()
        return str(row["kid"])

    def verification_keys(self, kid: str | None) -> KeySet:
        """The public keys to verify a token signed with ``kid`` (reloaded once if ``kid`` is new here)."""
        if kid is not None and not any(k.kid == kid for k in self._public.keys):
            with self._lock:
                self._load()
        return self._public

    def jwks(self) -> dict[str, object]:
        """The JWKS document (public keys only)."""
        self.ensure()
        return dict(self._public.as_dict(private=False))

    def _load(self) -> None:
        with self.engine.connect() as conn:
            rows = self._active_rows(conn, include_recently_retired=True)
        keys = [RSAKey.import_key(orjson.loads(row.private_jwk)) for row in rows]
        current = [key for key, row in zip(keys, rows, strict=True) if row.retired_at is None]
        self._signing = current[-1] if current else None
        self._public = KeySet([RSAKey.import_key(key.as_dict(private=False)) for key in keys])
        self._loaded_at = time.monotonic()

    @staticmethod
    def _active_rows(conn: Connection, include_recently_retired: bool = False) -> list[Row[Any]]:
        table = auth_signing_key
        keep: ColumnElement[bool] = table.c.retired_at.is_(None)
        if include_recently_retired:
            keep = or_(keep, table.c.retired_at > utc_now() - RETIRED_KEPT)
        stmt = select(table).where(keep).order_by(table.c.created_at, table.c.kid)
        return list(conn.execute(stmt).all())


def _new_key_row() -> dict[str, object]:
    kid = uuid.uuid4().hex
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"}, private=True)
    return {
        "kid": kid,
        "alg": ALGORITHM,
        "private_jwk": orjson.dumps(key.as_dict(private=True)).decode(),
        "created_at": utc_now(),
        "retired_at": None,
    }
