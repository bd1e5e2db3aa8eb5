"""Login sessions of the authorization pages: a random cookie value whose SHA-256 is in ``auth_session``.

Every browser gets a session value on its first page (anonymous until login); logging in (and passing the
TOTP step) replaces it with a fresh one. The CSRF token of the forms is derived from the value, so a page
from another site can neither read nor forge it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from fhir_server.storage.model import utc_now
from smart_auth import lifetimes
from smart_auth.credentials import digest, keyed_digest, new_secret, same
from smart_auth.schema import auth_session

COOKIE = "smart_session"


@dataclass(frozen=True)
class Session:
    value: str
    login: str | None = None  # None: anonymous
    awaiting_totp: bool = False

    @property
    def logged_in(self) -> bool:
        return self.login is not None and not self.awaiting_totp

    @property
    def csrf_token(self) -> str:
        return keyed_digest(self.value, "csrf")

    def check_csrf(self, token: str | None) -> bool:
        return token is not None and same(token, self.csrf_token)


class Sessions:
    """Sessions of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, cookie: str | None) -> Session:
        """The session a cookie names; an anonymous one (a new value when there is no cookie) otherwise."""
        if not cookie:
            return Session(new_secret())
        table = auth_session
        stmt = select(table).where(table.c.session_hash == digest(cookie), table.c.expires_at > utc_now())
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        return Session(cookie, row["login"], bool(row["awaiting_totp"])) if row else Session(cookie)

    def start(self, login: str, previous: Session, *, awaiting_totp: bool = False) -> Session:
        """Log ``login`` in under a new session value (the previous value, anonymous or not, stops working)."""
        session = Session(new_secret(), login, awaiting_totp)
        now = utc_now()
        with self.engine.begin() as conn:
            conn.execute(delete(auth_session).where(auth_session.c.expires_at < now))
            conn.execute(delete(auth_session).where(auth_session.c.session_hash == digest(previous.value)))
            conn.execute(
                insert(auth_session),
                {
                    "session_hash": digest(session.value),
                    "login": login,
                    "awaiting_totp": awaiting_totp,
                    "created_at": now,
                    "expires_at": now + lifetimes.LOGIN_SESSION,
                },
            )
        return session
