"""People who log in on the authorization pages: a login, an Argon2 password hash, optionally the FHIR
resource they are (``fhirUser``: ``Practitioner/123``, ``Patient/abc``) and a TOTP secret (RFC 6238).

Registration errors are ``UserError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyotp
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from fhir_server.storage.model import utc_now
from smart_auth.credentials import check_password, hash_password
from smart_auth.schema import auth_user

TOTP_ISSUER = "fhir-server"
_LOGIN = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
_FHIR_USER = re.compile(r"(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}")


class UserError(ValueError):
    """A user that cannot be registered (the message says why)."""


@dataclass(frozen=True)
class User:
    login: str
    fhir_user: str | None
    totp_secret: str | None

    @property
    def patient(self) -> str | None:
        """The patient id when this user is a Patient (standalone launches then need no picker)."""
        if self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.removeprefix("Patient/")
        return None

    def check_totp(self, code: str) -> bool:
        """Whether ``code`` is the current TOTP code (or the one before or after, for clock drift)."""
        return self.totp_secret is not None and pyotp.TOTP(self.totp_secret).verify(code.strip(), valid_window=1)


def is_fhir_user(reference: str) -> bool:
    """Whether ``reference`` can name a user (``Practitioner/123``, ``Patient/abc``, ...)."""
    return _FHIR_USER.fullmatch(reference) is not None


def add_user(
    engine: Engine, login: str, password: str, *, fhir_user: str | None = None, totp: bool = False
) -> tuple[User, str | None]:
    """Register a user; with ``totp`` the provisioning URI (for an authenticator app) is returned once."""
    if not _LOGIN.fullmatch(login):
        raise UserError("a login is 1 to 128 letters, digits or . _ @ + -")
    if len(password) < 8:
        raise UserError("a password has at least 8 characters")
    if fhir_user is not None and not is_fhir_user(fhir_user):
        raise UserError("fhirUser is a reference like Practitioner/123 or Patient/abc")
    secret = pyotp.random_base32() if totp else None
    row = {
        "login": login,
        "password_hash": hash_password(password),
        "fhir_user": fhir_user,
        "totp_secret": secret,
        "created_at": utc_now(),
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(auth_user), row)
    except IntegrityError as exc:
        raise UserError(f"a user {login!r} already exists") from exc
    uri = pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=TOTP_ISSUER) if secret else None
    return _user(row), uri


def find_user(engine: Engine, login: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(auth_user).where(auth_user.c.login == login)).mappings().first()
    return _user(row) if row else None


def authenticate(engine: Engine, login: str, password: str) -> User | None:
    """The user if ``password`` is theirs (the same work is done for an unknown login)."""
    with engine.connect() as conn:
        row = conn.execute(select(auth_user).where(auth_user.c.login == login)).mappings().first()
    return _user(row) if check_password(row["password_hash"] if row else None, password) and row else None


def list_users(engine: Engine) -> list[User]:
    with engine.connect() as conn:
        rows = conn.execute(select(auth_user).order_by(auth_user.c.login)).mappings().all()
    return [_user(row) for row in rows]


def remove_user(engine: Engine, login: str) -> bool:
    with engine.begin() as conn:
        return conn.execute(delete(auth_user).where(auth_user.c.login == login)).rowcount > 0


def _user(row: Any) -> User:
    return User(row["login"], row["fhir_user"], row["totp_secret"])
