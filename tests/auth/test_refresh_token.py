"""Refresh tokens: rotation, replay detection revoking the grant, narrowing, client binding."""

from __future__ import annotations

import pytest

from smart_auth.tokens import InvalidToken
from tests.auth.flows import App, register_app, standalone_token, token_request
from tests.conftest import LiveServer

SCOPE = "openid fhirUser offline_access patient/*.rs user/Observation.rs"


def refresh(server: LiveServer, app: App, token: str, **fields: str) -> dict[str, object]:
    response = token_request(server, app, grant_type="refresh_token", refresh_token=token, **fields)
    return {"status": response.status_code, **response.json()}


def test_rotation_and_replay_revokes_the_grant(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    first = standalone_token(smart_server, scope=SCOPE, app=app)
    second = refresh(smart_server, app, first["refresh_token"])
    assert second["status"] == 200 and second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == SCOPE and second["token_type"] == "Bearer"
    verifier = smart_server.app.ctx.auth.verifier
    assert verifier.verify(str(second["access_token"])).grant_id == verifier.verify(first["access_token"]).grant_id

    replay = refresh(smart_server, app, first["refresh_token"])
    assert replay["status"] == 400 and replay["error"] == "invalid_grant"
    for token in (first["access_token"], second["access_token"]):
        with pytest.raises(InvalidToken, match="revoked"):
            verifier.verify(str(token))
    latest = refresh(smart_server, app, str(second["refresh_token"]))
    assert latest["status"] == 400 and latest["error"] == "invalid_grant"


def test_narrower_scope_allowed_wider_refused(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    first = standalone_token(smart_server, scope=SCOPE, app=app)
    wider = refresh(smart_server, app, first["refresh_token"], scope=SCOPE + " patient/*.cruds")
    assert wider["status"] == 400 and wider["error"] == "invalid_scope"
    narrower = refresh(smart_server, app, first["refresh_token"], scope="patient/Observation.rs offline_access")
    assert narrower["status"] == 200 and narrower["scope"] == "patient/Observation.rs offline_access"
    assert "id_token" not in narrower
    again = refresh(smart_server, app, str(narrower["refresh_token"]))
    assert again["status"] == 200 and again["scope"] == SCOPE  # the grant keeps its scope


def test_random_refresh_token_is_invalid_grant(smart_server: LiveServer) -> None:
    response = refresh(smart_server, register_app(smart_server), "not-a-refresh-token")
    assert response["status"] == 400 and response["error"] == "invalid_grant"


def test_refresh_token_is_bound_to_its_client(smart_server: LiveServer) -> None:
    first = standalone_token(smart_server, scope=SCOPE)
    response = refresh(smart_server, register_app(smart_server), first["refresh_token"])
    assert response["status"] == 400 and response["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_or_online_access(smart_server: LiveServer) -> None:
    assert "refresh_token" not in standalone_token(smart_server, scope="openid patient/*.rs")
    assert "refresh_token" in standalone_token(smart_server, scope="online_access patient/*.rs")
