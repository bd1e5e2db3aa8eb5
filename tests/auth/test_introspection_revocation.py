"""Introspection (RFC 7662) and revocation (RFC 7009), with the revocation store in the database or Redis."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smart_auth.revocation import RedisRevocations
from smart_auth.tokens import InvalidToken, TokenVerifier
from tests.auth.flows import backend_token, register_app, standalone_token, token_request, urls
from tests.conftest import LiveServer, live_server


def introspect(server: LiveServer, token: str, caller: str | None = None) -> dict[str, object]:
    bearer = caller or backend_token(server)
    response = httpx.post(urls(server).introspect, data={"token": token}, headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_introspection_fields(smart_server: LiveServer, patient: tuple[str, str]) -> None:
    body = standalone_token(smart_server, patient=patient[0])
    found = introspect(smart_server, body["access_token"])
    access = smart_server.app.ctx.auth.verifier.verify(body["access_token"])
    assert found["active"] is True and found["scope"] == body["scope"]
    assert found["client_id"] == access.client_id and found["sub"] == access.subject
    assert found["exp"] == access.expires_at and isinstance(found["iat"], int) and found["iat"] < found["exp"]
    assert found["patient"] == patient[0] and found["token_type"] == "Bearer"
    assert found["fhirUser"] == f"{smart_server.base_url}/Practitioner/test-practitioner"


def test_introspection_with_client_authentication(smart_server: LiveServer) -> None:
    token = backend_token(smart_server)
    app = register_app(smart_server, "confidential-symmetric")
    basic = httpx.post(urls(smart_server).introspect, data={"token": token}, auth=(app.client_id, str(app.secret)))
    assert basic.status_code == 200 and basic.json()["active"] is True
    post = httpx.post(
        urls(smart_server).introspect,
        data={"token": token, "client_id": app.client_id, "client_secret": str(app.secret)},
    )
    assert post.json()["active"] is True


def test_introspection_requires_authentication(smart_server: LiveServer) -> None:
    token = backend_token(smart_server)
    anonymous = httpx.post(urls(smart_server).introspect, data={"token": token})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    forged = httpx.post(
        urls(smart_server).introspect, data={"token": token}, headers={"Authorization": "Bearer not.a.token"}
    )
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_client"


def test_unknown_token_is_inactive(smart_server: LiveServer) -> None:
    assert introspect(smart_server, "not-a-token") == {"active": False}


def test_revoked_access_token_is_inactive_and_refused(smart_server: LiveServer) -> None:
    body = standalone_token(smart_server)
    app_id = smart_server.app.ctx.auth.verifier.verify(body["access_token"]).client_id
    revoked = httpx.post(urls(smart_server).revoke, data={"token": body["access_token"], "client_id": app_id})
    assert revoked.status_code == 200
    assert introspect(smart_server, body["access_token"]) == {"active": False}
    with pytest.raises(InvalidToken, match="revoked"):
        smart_server.app.ctx.auth.verifier.verify(body["access_token"])


def test_revoking_a_refresh_token_revokes_its_grant(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    body = standalone_token(smart_server, app=app)
    assert introspect(smart_server, body["refresh_token"])["token_type"] == "refresh_token"
    response = httpx.post(
        urls(smart_server).revoke,
        data={"token": body["refresh_token"], "token_type_hint": "refresh_token", "client_id": app.client_id},
    )
    assert response.status_code == 200
    assert introspect(smart_server, body["access_token"]) == {"active": False}
    assert introspect(smart_server, body["refresh_token"]) == {"active": False}
    with pytest.raises(InvalidToken):
        smart_server.app.ctx.auth.verifier.verify(body["access_token"])
    refreshed = token_request(smart_server, app, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_revoking_an_unknown_token_is_200(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    response = httpx.post(urls(smart_server).revoke, data={"token": "whatever", "client_id": app.client_id})
    assert response.status_code == 200


@pytest.fixture(scope="module")
def redis_servers(database_url: str, redis_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers (think: two workers) sharing the database and Redis."""
    with (
        live_server(database_url, auth=True, redis_url=redis_url) as first,
        live_server(database_url, auth=True, redis_url=redis_url) as second,
    ):
        yield first, second


def test_revocation_through_redis_reaches_every_server(redis_servers: tuple[LiveServer, LiveServer]) -> None:
    first, second = redis_servers
    assert isinstance(second.app.ctx.auth.revocations, RedisRevocations)
    # The second server's keys and Redis connection, checking tokens of the first's issuer: another worker.
    other_worker = TokenVerifier(
        second.app.ctx.auth.keys, second.app.ctx.auth.revocations, first.base_url, first.base_url
    )
    app = register_app(first)
    body = standalone_token(first, app=app)
    assert other_worker.verify(body["access_token"]).client_id == app.client_id
    revoked = httpx.post(urls(first).revoke, data={"token": body["refresh_token"], "client_id": app.client_id})
    assert revoked.status_code == 200
    for verifier in (first.app.ctx.auth.verifier, other_worker):
        with pytest.raises(InvalidToken, match="revoked"):
            verifier.verify(body["access_token"])
    assert introspect(second, backend_token(second), caller=None)["active"] is True
