"""Authorization requests that must not yield a code (Inferno (g)(10) and SMART test kit negatives)."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.flows import REDIRECT_URI, Browser, authorization, redirect_params, register_app, register_user, urls
from tests.conftest import LiveServer


def open_authorize(server: LiveServer, params: dict[str, str]) -> httpx.Response:
    return httpx.get(urls(server).authorize, params=params, follow_redirects=False)


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(smart_server: LiveServer) -> None:
    auth = authorization(smart_server, register_app(smart_server), "openid", redirect_uri="https://evil.example/cb")
    response = open_authorize(smart_server, auth.params)
    assert response.status_code == 400 and "location" not in response.headers
    assert "text/html" in response.headers["content-type"]
    assert "https://evil.example/cb is not supported by client" in response.text


def test_missing_redirect_uri_gets_an_error_page(smart_server: LiveServer) -> None:
    auth = authorization(smart_server, register_app(smart_server), "openid", redirect_uri=None)
    response = open_authorize(smart_server, auth.params)
    assert response.status_code == 400 and "location" not in response.headers
    assert "redirect_uri" in response.text


def test_unknown_client_gets_an_error_page(smart_server: LiveServer) -> None:
    auth = authorization(smart_server, register_app(smart_server), "openid", client_id="no-such-client")
    response = open_authorize(smart_server, auth.params)
    assert response.status_code == 400 and "location" not in response.headers
    assert "The client does not exist on this server." in response.text


@pytest.mark.parametrize("aud", ["https://other.example/fhir", ""])
def test_wrong_aud_redirects_with_invalid_request(smart_server: LiveServer, aud: str) -> None:
    auth = authorization(smart_server, register_app(smart_server), "openid", aud=aud)
    params = redirect_params(open_authorize(smart_server, auth.params))
    assert params["error"] == "invalid_request" and "aud" in params["error_description"]
    assert params["state"] == auth.params["state"] and "code" not in params


@pytest.mark.parametrize(
    ("challenge", "method"),
    [(None, None), ("", "S256"), (None, "S256"), ("x" * 43, "plain"), ("x" * 43, None), ("short", "S256")],
    ids=["missing", "blank", "method-only", "plain", "method-missing", "malformed"],
)
def test_pkce_s256_is_required(smart_server: LiveServer, challenge: str | None, method: str | None) -> None:
    auth = authorization(smart_server, register_app(smart_server), "openid")
    params = {k: v for k, v in auth.params.items() if k not in ("code_challenge", "code_challenge_method")}
    params.update(
        {k: v for k, v in {"code_challenge": challenge, "code_challenge_method": method}.items() if v is not None}
    )
    found = redirect_params(open_authorize(smart_server, params))
    assert found["error"] == "invalid_request" and "code" not in found


def test_unsupported_response_type(smart_server: LiveServer) -> None:
    auth = authorization(smart_server, register_app(smart_server), "openid", response_type="token")
    found = redirect_params(open_authorize(smart_server, auth.params))
    assert found["error"] == "unsupported_response_type"


def test_scopes_not_allowed_for_the_client_are_dropped(smart_server: LiveServer) -> None:
    app = register_app(smart_server, scope="openid patient/Observation.rs")
    scope = "openid patient/Observation.rs?category=laboratory patient/Patient.rs system/*.rs made-up"
    auth = authorization(smart_server, app, scope)
    browser = Browser(smart_server)
    browser.open(auth)
    browser.sign_in(register_user(smart_server))
    assert browser.options("approve") == ["openid", "patient/Observation.rs?category=laboratory"]
    body = auth.exchange(smart_server, redirect_params(browser.consent())["code"]).json()
    assert body["scope"] == "openid patient/Observation.rs?category=laboratory"


def test_unknown_launch_value_redirects_with_error(smart_server: LiveServer) -> None:
    auth = authorization(smart_server, register_app(smart_server), "launch openid", launch="not-a-launch")
    found = redirect_params(open_authorize(smart_server, auth.params))
    assert found["error"] == "invalid_request" and "launch" in found["error_description"]


def test_error_redirect_keeps_the_registered_uri(smart_server: LiveServer) -> None:
    auth = authorization(smart_server, register_app(smart_server), "openid", aud="https://x.example")
    location = open_authorize(smart_server, auth.params).headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
