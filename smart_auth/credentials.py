"""Secrets handed out by the authorization server and how they are kept: random values stored as SHA-256
digests (codes, refresh tokens, launches, sessions) and passwords or client secrets as Argon2 hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def new_secret() -> str:
    """A random value (256 bits, URL-safe) for codes, tokens, launches, sessions and client secrets."""
    return secrets.token_urlsafe(32)


def digest(value: str) -> str:
    """The hex SHA-256 of ``value``: what the database keeps of a random secret."""
    return hashlib.sha256(value.encode()).hexdigest()


def keyed_digest(key: str, purpose: str) -> str:
    """HMAC-SHA-256 of ``purpose`` under ``key``: a value derived from a secret, useless without it."""
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; a missing hash still costs one verification (no timing hint)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
