"""``.well-known/smart-configuration``, ``openid-configuration``, JWKS and CORS."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.mark.parametrize("accept", ["application/json", "text/html", "application/fhir+json", "*/*"])
def test_smart_configuration_is_json_whatever_the_accept_header(smart_server: LiveServer, accept: str) -> None:
    response = httpx.get(f"{smart_server.base_url}/.well-known/smart-configuration", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    root = smart_server.base_url.removesuffix("/fhir")
    assert body["issuer"] == smart_server.base_url
    assert body["authorization_endpoint"] == f"{root}/auth/authorize"
    assert body["token_endpoint"] == f"{root}/auth/token"
    assert body["introspection_endpoint"] == f"{root}/auth/introspect"
    assert body["revocation_endpoint"] == f"{root}/auth/revoke"
    assert body["jwks_uri"] == f"{root}/auth/jwks"
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert set(body["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    }
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert body["response_types_supported"] == ["code"]
    assert {"launch-ehr", "launch-standalone", "authorize-post", "client-confidential-asymmetric"} <= set(
        body["capabilities"]
    )
    assert {"context-standalone-encounter", "permission-v1", "permission-v2", "sso-openid-connect"} <= set(
        body["capabilities"]
    )
    assert {"openid", "fhirUser", "launch/patient", "offline_access", "system/*.rs"} <= set(body["scopes_supported"])


def test_openid_configuration(smart_server: LiveServer) -> None:
    body = httpx.get(f"{smart_server.base_url}/.well-known/openid-configuration").json()
    assert body["issuer"] == smart_server.base_url
    assert body["id_token_signing_alg_values_supported"] == ["RS256"]
    assert body["subject_types_supported"] == ["public"]
    assert body["jwks_uri"].endswith("/auth/jwks") and body["response_types_supported"] == ["code"]


def test_jwks_publishes_public_keys_only(smart_server: LiveServer) -> None:
    response = httpx.get(smart_server.base_url.removesuffix("/fhir") + "/auth/jwks")
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"
    keys = response.json()["keys"]
    assert keys and all(key["kty"] == "RSA" and "d" not in key and key["kid"] for key in keys)


@pytest.mark.parametrize(
    "path", ["/auth/token", "/auth/introspect", "/auth/revoke", "/auth/jwks", "/fhir/.well-known/smart-configuration"]
)
def test_cors_preflight(smart_server: LiveServer, path: str) -> None:
    root = smart_server.base_url.removesuffix("/fhir")
    response = httpx.options(
        root + path,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "Authorization" in response.headers["access-control-allow-headers"]


def test_token_endpoint_refuses_get_with_an_oauth_error(smart_server: LiveServer) -> None:
    response = httpx.get(smart_server.base_url.removesuffix("/fhir") + "/auth/token")
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"
