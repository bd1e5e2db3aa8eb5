"""SMART Backend Services: client_credentials with a private_key_jwt assertion (RS384, ES384)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tests.auth.flows import (
    ASSERTION_TYPE,
    backend_token_response,
    client_assertion,
    register_app,
    register_backend,
    urls,
)
from tests.conftest import LiveServer, free_port, unique


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_backend_token(smart_server: LiveServer, alg: str) -> None:
    app = register_backend(smart_server, alg=alg, scope="system/*.rs system/Patient.cruds")
    response = backend_token_response(
        smart_server, app, scope="system/Observation.rs system/Patient.rs patient/*.rs openid"
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] <= 300
    assert body["scope"] == "system/Observation.rs system/Patient.rs"
    assert "refresh_token" not in body and "id_token" not in body
    token = smart_server.app.ctx.auth.verifier.verify(body["access_token"])
    assert token.subject == app.client_id and token.client_id == app.client_id
    assert token.expires_at <= time.time() + 300 and token.grant_id is None


def test_only_unallowed_scopes_is_invalid_scope(smart_server: LiveServer) -> None:
    app = register_backend(smart_server, scope="system/Patient.rs")
    response = backend_token_response(smart_server, app, scope="system/Observation.rs")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def assertion_error(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error_description"]
    return str(response.json()["error"])


def test_hs256_assertion_is_refused(smart_server: LiveServer) -> None:
    app = register_backend(smart_server)
    token_url = urls(smart_server).token
    secret = OctKey.generate_key(256)
    now = int(time.time())
    claims = {"iss": app.client_id, "sub": app.client_id, "aud": token_url, "exp": now + 60, "jti": unique()}
    forged = jwt.encode({"alg": "HS256", "kid": app.key.kid}, claims, secret)  # type: ignore[union-attr]
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": forged,
        },
    )
    assert assertion_error(response) == "invalid_client"


def test_rs256_assertion_is_refused(smart_server: LiveServer) -> None:
    app = register_backend(smart_server)
    app.alg = "RS256"
    assert assertion_error(backend_token_response(smart_server, app)) == "invalid_client"


def test_bad_client_assertion_type(smart_server: LiveServer) -> None:
    app = register_backend(smart_server)
    token_url = urls(smart_server).token
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            "client_assertion": client_assertion(app, token_url),
        },
    )
    assert assertion_error(response) == "invalid_client"


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "someone-else"},
        {"aud": "https://other.example/token"},
        {"exp": int(time.time()) - 120},
        {"exp": int(time.time()) + 3600},
        {"exp": None},
        {"jti": None},
        {"sub": "no-such-client", "iss": "no-such-client"},
    ],
    ids=["wrong-iss", "wrong-aud", "expired", "exp-over-5-min", "no-exp", "no-jti", "unknown-client"],
)
def test_bad_assertion_claims(smart_server: LiveServer, claims: dict[str, object]) -> None:
    app = register_backend(smart_server)
    assert assertion_error(backend_token_response(smart_server, app, **claims)) == "invalid_client"


def test_replayed_jti_is_refused(smart_server: LiveServer) -> None:
    app = register_backend(smart_server)
    jti = unique("jti")
    assert backend_token_response(smart_server, app, jti=jti).status_code == 200
    assert assertion_error(backend_token_response(smart_server, app, jti=jti)) == "invalid_client"


def test_assertion_signed_by_another_key_is_refused(smart_server: LiveServer) -> None:
    app = register_backend(smart_server)
    app.key = RSAKey.generate_key(2048, parameters={"kid": app.key.kid}, private=True)  # type: ignore[union-attr]
    assert assertion_error(backend_token_response(smart_server, app)) == "invalid_client"


@pytest.fixture
def jwks_host() -> Iterator[tuple[str, dict[str, object]]]:
    """A JWKS served over HTTP (the document can change during the test)."""
    document: dict[str, object] = {"keys": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", document
    server.shutdown()


def test_keys_from_a_jwks_url_selected_by_kid(
    smart_server: LiveServer, jwks_host: tuple[str, dict[str, object]]
) -> None:
    url, document = jwks_host
    other = RSAKey.generate_key(2048, parameters={"kid": unique("other")}, private=True)
    app = register_backend(smart_server, jwks=None, jwks_uri=url)
    document["keys"] = [other.as_dict(private=False), app.key.as_dict(private=False)]  # type: ignore[union-attr]
    assert backend_token_response(smart_server, app).status_code == 200
    app.key = other
    assert backend_token_response(smart_server, app).status_code == 200
    app.key = RSAKey.generate_key(2048, parameters={"kid": unique("unknown")}, private=True)
    assert assertion_error(backend_token_response(smart_server, app)) == "invalid_client"


def test_symmetric_client_credentials_quick_start(smart_server: LiveServer) -> None:
    app = register_app(smart_server, "confidential-symmetric", scope="system/*.rs")
    response = httpx.post(
        urls(smart_server).token,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(app.client_id, str(app.secret)),
    )
    assert response.status_code == 200 and response.json()["scope"] == "system/*.rs"


def test_public_client_cannot_use_client_credentials(smart_server: LiveServer) -> None:
    app = register_app(smart_server, scope="system/*.rs")
    response = httpx.post(
        urls(smart_server).token,
        data={"grant_type": "client_credentials", "scope": "system/*.rs", "client_id": app.client_id},
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
