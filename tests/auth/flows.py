"""SMART clients for tests: register apps and users, drive the authorization pages like a browser
(httpx with cookies, forms read with lxml), and get tokens from every grant.

Reuse: ``standalone_token(server, scope=...)`` gives a user token after the full launch,
``backend_token(server, scope=...)`` a Backend Services token (``private_key_jwt``, RS384).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pyotp
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from lxml import html

from smart_auth.clients import add_client
from smart_auth.users import add_user
from tests.conftest import LiveServer, unique

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: tests read the redirect's Location
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PASSWORD = "correct horse battery"


@dataclass
class App:
    client_id: str
    secret: str | None = None
    key: RSAKey | ECKey | None = None
    alg: str = "RS384"
    redirect_uri: str = REDIRECT_URI


@dataclass
class TestUser:
    login: str
    password: str = PASSWORD
    fhir_user: str | None = None
    totp_secret: str | None = None


def urls(server: LiveServer) -> Any:
    return server.app.ctx.auth.urls


def register_app(server: LiveServer, kind: str = "public", scope: str | None = None, **extra: Any) -> App:
    """A registered app (public by default) with ``REDIRECT_URI``; asymmetric apps get an RS384 key."""
    key = (
        RSAKey.generate_key(2048, parameters={"kid": unique("k")}, private=True)
        if kind.endswith("asymmetric")
        else None
    )
    jwks = {"keys": [key.as_dict(private=False)]} if key is not None and "jwks_uri" not in extra else None
    client, secret = add_client(
        server.app.ctx.auth.engine, unique("app"), kind, redirect_uris=[REDIRECT_URI], scope=scope, jwks=jwks, **extra
    )
    return App(client.client_id, secret, key)


def register_backend(server: LiveServer, alg: str = "RS384", scope: str = "system/*.rs", **extra: Any) -> App:
    """A Backend Services client with a new RS384 or ES384 key in an inline JWKS."""
    kid = unique("k")
    key: RSAKey | ECKey = (
        RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
        if alg.startswith("RS")
        else ECKey.generate_key("P-384", parameters={"kid": kid}, private=True)
    )
    jwks = extra.pop("jwks", {"keys": [key.as_dict(private=False)]})
    client, _ = add_client(
        server.app.ctx.auth.engine, unique("backend"), "confidential-asymmetric", scope=scope, jwks=jwks, **extra
    )
    return App(client.client_id, key=key, alg=alg)


def register_user(server: LiveServer, fhir_user: str | None = None, totp: bool = False) -> TestUser:
    login = unique("user")
    _, uri = add_user(server.app.ctx.auth.engine, login, PASSWORD, fhir_user=fhir_user, totp=totp)
    secret = parse_qs(urlsplit(uri).query)["secret"][0] if uri else None
    return TestUser(login, fhir_user=fhir_user, totp_secret=secret)


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def client_assertion(app: App, token_url: str, **claims: Any) -> str:
    """A signed ``private_key_jwt`` assertion; ``claims`` override the standard ones (None removes one)."""
    assert app.key is not None
    now = int(time.time())
    body = {"iss": app.client_id, "sub": app.client_id, "aud": token_url, "exp": now + 240, "jti": uuid.uuid4().hex}
    body.update(claims)
    header = {"alg": app.alg, "kid": app.key.kid, "typ": "JWT"}
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, app.key, algorithms=[app.alg])


def backend_token_response(server: LiveServer, app: App, scope: str = "system/*.rs", **claims: Any) -> httpx.Response:
    token_url = urls(server).token
    return httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(app, token_url, **claims),
        },
    )


def backend_token(server: LiveServer, scope: str = "system/*.rs") -> str:
    """A Backend Services access token for a new client allowed ``scope``."""
    response = backend_token_response(server, register_backend(server, scope=scope), scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def client_auth(app: App, token_url: str) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Form fields and Basic credentials that authenticate ``app`` (public: client_id only)."""
    if app.key is not None:
        assertion = client_assertion(app, token_url)
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}, None
    if app.secret is not None:
        return {}, (app.client_id, app.secret)
    return {"client_id": app.client_id}, None


def token_request(server: LiveServer, app: App, **fields: str) -> httpx.Response:
    token_url = urls(server).token
    extra, basic = client_auth(app, token_url)
    return httpx.post(token_url, data={**fields, **extra}, auth=basic)


@dataclass
class Authorization:
    """An authorize request's parameters, PKCE verifier included."""

    app: App
    params: dict[str, str]
    verifier: str

    def exchange(self, server: LiveServer, code: str, **overrides: str) -> httpx.Response:
        fields = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.app.redirect_uri,
            "code_verifier": self.verifier,
            **overrides,
        }
        return token_request(server, self.app, **{k: v for k, v in fields.items() if v is not None})


def authorization(server: LiveServer, app: App, scope: str, **params: str | None) -> Authorization:
    verifier, challenge = pkce()
    values: dict[str, str | None] = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "aud": server.base_url,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    return Authorization(app, {k: v for k, v in values.items() if v is not None}, verifier)


@dataclass
class Browser:
    """A user agent on the authorization pages: keeps cookies, reads and submits forms, stops at redirects."""

    server: LiveServer
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30, follow_redirects=False))
    page: httpx.Response | None = None

    def open(self, auth: Authorization) -> httpx.Response:
        self.page = self.http.get(urls(self.server).authorize + "?" + urlencode(auth.params))
        return self.page

    def forms(self) -> list[Any]:
        assert self.page is not None
        return list(html.fromstring(self.page.text).forms)

    def submit(self, step: str, checked: dict[str, list[str]] | None = None, **fields: str) -> httpx.Response:
        """Fill and submit the form of ``step`` (its hidden fields kept; ``checked`` picks checkboxes)."""
        form = next(f for f in self.forms() if f.inputs["step"].value == step)
        data: list[tuple[str, str]] = []
        for element in form.inputs:
            kind = element.get("type")
            if not element.name or kind in ("submit", "radio", "checkbox") or element.tag == "button":
                continue
            data.append((element.name, element.value or ""))
        data = [(name, value) for name, value in data if name not in fields] + list(fields.items())
        for name, values in (checked or {}).items():
            data.extend((name, value) for value in values)
        body: dict[str, list[str]] = {}
        for name, value in data:
            body.setdefault(name, []).append(value)
        self.page = self.http.post(urljoin(str(self.page.url), form.action), data=body)  # type: ignore[union-attr]
        return self.page

    def title(self) -> str:
        assert self.page is not None
        return str(html.fromstring(self.page.text).findtext(".//h1")).strip()

    def options(self, name: str) -> list[str]:
        """The values of the radio buttons or checkboxes called ``name`` on the page."""
        return [e.get("value") for e in html.fromstring(self.page.text).xpath(f"//input[@name='{name}']")]  # type: ignore[union-attr]

    def sign_in(self, user: TestUser) -> httpx.Response:
        self.submit("login", login=user.login, password=user.password)
        if user.totp_secret:
            self.submit("totp", totp=pyotp.TOTP(user.totp_secret).now())
        return self.page  # type: ignore[return-value]

    def consent(self, approve: list[str] | None = None) -> httpx.Response:
        """Allow ``approve`` (default: everything offered)."""
        return self.submit(
            "consent",
            checked={"approve": approve if approve is not None else self.options("approve")},
            decision="allow",
        )


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect to the app."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def standalone_code(
    server: LiveServer, app: App, user: TestUser, scope: str, patient: str | None = None, encounter: str | None = None
) -> tuple[Authorization, dict[str, str]]:
    """Sign in, pick ``patient`` (and ``encounter``) when asked, allow everything: the redirect's parameters."""
    auth = authorization(server, app, scope)
    browser = Browser(server)
    browser.open(auth)
    browser.sign_in(user)
    if browser.title() == "Choose a patient":
        assert patient is not None, "the patient picker came up"
        browser.submit("patient", patient=patient)
    if browser.title() == "Choose an encounter":
        browser.submit("encounter", encounter=encounter or "none")
    params = redirect_params(browser.consent())
    assert params["state"] == auth.params["state"]
    return auth, params


def standalone_token(
    server: LiveServer,
    scope: str = "openid fhirUser offline_access patient/*.rs",
    patient: str | None = None,
    user: TestUser | None = None,
    app: App | None = None,
) -> dict[str, Any]:
    """The token response of a full standalone launch by a new public app (and a new user); with
    ``patient``, ``launch/patient`` is requested and that patient picked."""
    if patient is not None and "launch/patient" not in scope.split():
        scope = f"launch/patient {scope}"
    app = app or register_app(server)
    user = user or register_user(server, fhir_user="Practitioner/test-practitioner")
    auth, params = standalone_code(server, app, user, scope, patient)
    response = auth.exchange(server, params["code"])
    assert response.status_code == 200, response.text
    return dict(response.json())
