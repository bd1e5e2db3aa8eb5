"""Standalone launch over HTTP: sign-in, patient and encounter pickers, consent, code, token, id_token."""

from __future__ import annotations

import time

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth.flows import (
    Browser,
    authorization,
    redirect_params,
    register_app,
    register_user,
    standalone_code,
    urls,
)
from tests.conftest import LiveServer


def test_full_standalone_launch_with_pickers(
    smart_server: LiveServer, patient: tuple[str, str], encounter: str
) -> None:
    app = register_app(smart_server)
    user = register_user(smart_server, fhir_user="Practitioner/p1")
    scope = "launch/patient launch/encounter openid fhirUser offline_access patient/*.rs patient/Observation.rs"
    auth = authorization(smart_server, app, scope, nonce="n-123")
    browser = Browser(smart_server)
    page = browser.open(auth)
    assert page.status_code == 200 and browser.title() == "Sign in"
    assert 'lang="en"' in page.text and "<legend>" in page.text and 'for="password"' in page.text
    assert "smart_session" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
    assert "samesite=lax" in page.headers["set-cookie"].lower()

    browser.sign_in(user)
    assert browser.title() == "Choose a patient"
    browser.submit("search", name=patient[1])
    assert browser.options("patient") == [patient[0]]
    assert "Ada " + patient[1] in browser.page.text  # type: ignore[union-attr]

    browser.submit("patient", patient=patient[0])
    assert browser.title() == "Choose an encounter"
    assert browser.options("encounter") == [encounter, "none"]
    browser.submit("encounter", encounter=encounter)
    assert browser.title().startswith("Allow ")
    assert "Read and search observation records about the selected patient" in browser.page.text  # type: ignore[union-attr]
    assert sorted(browser.options("approve")) == sorted(scope.split())

    params = redirect_params(browser.consent())
    assert params["state"] == auth.params["state"] and "code" in params
    response = auth.exchange(smart_server, params["code"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == scope
    assert body["patient"] == patient[0] and body["encounter"] == encounter
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"] == urls(smart_server).style
    assert body["refresh_token"]

    access = smart_server.app.ctx.auth.verifier.verify(body["access_token"])
    assert (access.patient, access.encounter, access.fhir_user) == (patient[0], encounter, "Practitioner/p1")
    assert access.subject == user.login and access.client_id == app.client_id and access.grant_id

    keys = KeySet.import_key_set(httpx.get(urls(smart_server).jwks).json())
    id_token = jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert id_token["iss"] == smart_server.base_url
    assert id_token["aud"] == app.client_id and id_token["sub"] == user.login
    assert id_token["fhirUser"] == f"{smart_server.base_url}/Practitioner/p1"
    assert id_token["nonce"] == "n-123" and id_token["exp"] > time.time()

    style = httpx.get(body["smart_style_url"])
    assert style.status_code == 200 and "color_background" in style.json()


def test_patient_user_gets_own_patient_without_picker(smart_server: LiveServer, patient: tuple[str, str]) -> None:
    app = register_app(smart_server)
    user = register_user(smart_server, fhir_user=f"Patient/{patient[0]}")
    auth = authorization(smart_server, app, "launch/patient openid fhirUser patient/*.rs")
    browser = Browser(smart_server)
    browser.open(auth)
    browser.sign_in(user)
    assert browser.title().startswith("Allow ")
    body = auth.exchange(smart_server, redirect_params(browser.consent())["code"]).json()
    assert body["patient"] == patient[0]
    assert "refresh_token" not in body


def test_unchecked_scopes_are_not_granted(smart_server: LiveServer, patient: tuple[str, str]) -> None:
    app = register_app(smart_server)
    user = register_user(smart_server)
    auth = authorization(smart_server, app, "launch/patient patient/Patient.rs patient/Observation.rs offline_access")
    browser = Browser(smart_server)
    browser.open(auth)
    browser.sign_in(user)
    browser.submit("patient", patient=patient[0])
    params = redirect_params(browser.consent(approve=["launch/patient", "patient/Patient.rs"]))
    body = auth.exchange(smart_server, params["code"]).json()
    assert body["scope"] == "launch/patient patient/Patient.rs"
    assert "refresh_token" not in body and body["patient"] == patient[0]


def test_deny_redirects_with_access_denied(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    auth = authorization(smart_server, app, "openid patient/*.rs")
    browser = Browser(smart_server)
    browser.open(auth)
    browser.sign_in(register_user(smart_server))
    params = redirect_params(browser.submit("consent", decision="deny"))
    assert params["error"] == "access_denied" and params["state"] == auth.params["state"] and "code" not in params


def test_wrong_password_stays_on_sign_in(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    user = register_user(smart_server)
    browser = Browser(smart_server)
    browser.open(authorization(smart_server, app, "openid"))
    page = browser.submit("login", login=user.login, password="wrong password")
    assert page.status_code == 200 and browser.title() == "Sign in"
    assert "The user name or password is wrong." in page.text


def test_totp_step_for_users_with_totp(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    user = register_user(smart_server, totp=True)
    auth = authorization(smart_server, app, "openid patient/*.rs")
    browser = Browser(smart_server)
    browser.open(auth)
    browser.submit("login", login=user.login, password=user.password)
    assert browser.title() == "Enter your verification code"
    page = browser.submit("totp", totp="000000" if user.totp_secret else "")
    assert browser.title() == "Enter your verification code" and "not right" in page.text
    import pyotp

    browser.submit("totp", totp=pyotp.TOTP(str(user.totp_secret)).now())
    assert browser.title().startswith("Allow ")


def test_forms_without_the_csrf_token_do_not_advance(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    user = register_user(smart_server)
    auth = authorization(smart_server, app, "openid patient/*.rs")
    browser = Browser(smart_server)
    browser.open(auth)
    page = browser.submit("login", login=user.login, password=user.password, csrf_token="forged")
    assert browser.title() == "Sign in"
    browser.sign_in(user)
    page = browser.submit("consent", decision="allow", csrf_token="forged")
    assert page.status_code == 200 and browser.title().startswith("Allow ")


def test_signed_in_session_skips_sign_in_next_time(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    user = register_user(smart_server)
    browser = Browser(smart_server)
    browser.open(authorization(smart_server, app, "openid"))
    browser.sign_in(user)
    auth = authorization(smart_server, app, "openid patient/*.rs")
    browser.open(auth)
    assert browser.title().startswith("Allow ")
    assert redirect_params(browser.consent())["state"] == auth.params["state"]


def test_authorize_post_is_accepted(smart_server: LiveServer) -> None:
    app = register_app(smart_server)
    auth = authorization(smart_server, app, "openid")
    page = httpx.post(urls(smart_server).authorize, data=auth.params)
    assert page.status_code == 200 and "<h1>Sign in</h1>" in page.text


def test_standalone_code_helper(smart_server: LiveServer, patient: tuple[str, str]) -> None:
    app = register_app(smart_server)
    auth, params = standalone_code(
        smart_server, app, register_user(smart_server), "launch/patient patient/*.rs", patient[0]
    )
    assert auth.exchange(smart_server, params["code"]).json()["patient"] == patient[0]
