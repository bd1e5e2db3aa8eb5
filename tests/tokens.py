"""Access tokens for tests, minted with a live server's own signing key (as its token endpoint does), so a
test can call an auth-on server without going through an OAuth flow it is not about."""

from __future__ import annotations

from smart_auth.tokens import issue_access_token
from tests.conftest import LiveServer


def mint(
    server: LiveServer,
    scope: str,
    client_id: str = "tests",
    *,
    patient: str | None = None,
    fhir_user: str | None = None,
    audience: str | None = None,
    lifetime: int = 600,
) -> str:
    """A signed access token of ``server`` for ``scope`` (``audience``: another server's base, to be refused)."""
    auth = server.app.ctx.auth
    assert auth is not None, "the server runs with authorization off"
    encoded, _ = issue_access_token(
        auth.keys,
        auth.issuer,
        audience or auth.issuer,
        client_id=client_id,
        scope=scope,
        subject=client_id,
        lifetime=lifetime,
        patient=patient,
        fhir_user=fhir_user,
    )
    return encoded
