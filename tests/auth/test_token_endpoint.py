"""The token endpoint's authorization_code grant: PKCE verification, client authentication, one-use codes."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.flows import App, Authorization, register_app, register_user, standalone_code, token_request, urls
from tests.conftest import LiveServer

SCOPE = "openid fhirUser patient/*.rs"


def code_for(server: LiveServer, app: App | None = None, scope: str = SCOPE) -> tuple[Authorization, str]:
    auth, params = standalone_code(server, app or register_app(server), register_user(server), scope)
    return auth, params["code"]


@pytest.mark.parametrize(
    ("verifier", "error"),
    [
        (None, "invalid_request"),
        ("", "invalid_request"),
        ("w" * 64, "invalid_grant"),
        ("challenge", "invalid_grant"),
    ],
    ids=["missing", "blank", "wrong", "equal-to-challenge"],
)
def test_pkce_verifier_is_checked(smart_server: LiveServer, verifier: str | None, error: str) -> None:
    auth, code = code_for(smart_server)
    if verifier == "challenge":
        verifier = auth.params["code_challenge"]
    response = auth.exchange(smart_server, code, code_verifier=verifier)
    assert response.status_code == 400
    assert response.json()["error"] == error and response.json()["error_description"]


def test_code_works_once_and_a_second_use_revokes_the_first_token(smart_server: LiveServer) -> None:
    auth, code = code_for(smart_server)
    first = auth.exchange(smart_server, code)
    assert first.status_code == 200
    again = auth.exchange(smart_server, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    with pytest.raises(Exception, match="revoked"):
        smart_server.app.ctx.auth.verifier.verify(first.json()["access_token"])


def test_redirect_uri_must_match(smart_server: LiveServer) -> None:
    auth, code = code_for(smart_server)
    response = auth.exchange(smart_server, code, redirect_uri="http://127.0.0.1:9/other")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_code_is_bound_to_its_client(smart_server: LiveServer) -> None:
    auth, code = code_for(smart_server)
    other = register_app(smart_server)
    response = token_request(
        smart_server,
        other,
        grant_type="authorization_code",
        code=code,
        redirect_uri=other.redirect_uri,
        code_verifier=auth.verifier,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("grant_type", ["password", "implicit", "", "urn:ietf:params:oauth:grant-type:jwt-bearer"])
def test_unsupported_grant_type(smart_server: LiveServer, grant_type: str) -> None:
    response = httpx.post(urls(smart_server).token, data={"grant_type": grant_type, "client_id": "x"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type" and response.json()["error_description"]


def test_confidential_symmetric_client_with_basic_and_post(smart_server: LiveServer) -> None:
    app = register_app(smart_server, "confidential-symmetric")
    auth, code = code_for(smart_server, app)
    basic = auth.exchange(smart_server, code)
    assert basic.status_code == 200 and basic.json()["scope"] == SCOPE
    auth, code = code_for(smart_server, app)
    post = httpx.post(
        urls(smart_server).token,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "code_verifier": auth.verifier,
            "client_id": app.client_id,
            "client_secret": app.secret,
        },
    )
    assert post.status_code == 200 and post.json()["access_token"]


def test_confidential_client_with_wrong_or_no_secret_is_invalid_client(smart_server: LiveServer) -> None:
    app = register_app(smart_server, "confidential-symmetric")
    auth, code = code_for(smart_server, app)
    wrong = httpx.post(
        urls(smart_server).token,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "code_verifier": auth.verifier,
        },
        auth=(app.client_id, "not-the-secret"),
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    bare = httpx.post(
        urls(smart_server).token,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "client_id": app.client_id,
            "code_verifier": auth.verifier,
        },
    )
    assert bare.status_code == 401 and bare.json()["error"] == "invalid_client"


def test_confidential_asymmetric_app_with_private_key_jwt(smart_server: LiveServer) -> None:
    app = register_app(smart_server, "confidential-asymmetric")
    auth, code = code_for(smart_server, app)
    response = auth.exchange(smart_server, code)
    assert response.status_code == 200, response.text
    assert smart_server.app.ctx.auth.verifier.verify(response.json()["access_token"]).client_id == app.client_id
