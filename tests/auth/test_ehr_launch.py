"""EHR launch: the EHR registers a context (POST /auth/launch), the app authorizes with ``launch``."""

from __future__ import annotations

import httpx

from smart_auth.launch import find_launch
from tests.auth.flows import Browser, authorization, redirect_params, register_app, register_user, urls
from tests.conftest import LiveServer


def ehr_launch(server: LiveServer, context: dict[str, object]) -> httpx.Response:
    ehr = register_app(server, "confidential-symmetric", ehr_launch=True)
    return httpx.post(urls(server).launch, json=context, auth=(ehr.client_id, str(ehr.secret)))


def test_ehr_launch_carries_the_context(smart_server: LiveServer, patient: tuple[str, str], encounter: str) -> None:
    user = register_user(smart_server, fhir_user="Practitioner/ehr-doc")
    context = {
        "patient": patient[0],
        "encounter": encounter,
        "fhirUser": "Practitioner/ehr-doc",
        "fhirContext": [{"reference": f"Encounter/{encounter}"}],
    }
    created = ehr_launch(smart_server, context)
    assert created.status_code == 201, created.text
    launch = created.json()["launch"]

    app = register_app(smart_server)
    auth = authorization(smart_server, app, "launch openid fhirUser patient/*.rs", launch=launch)
    browser = Browser(smart_server)
    browser.open(auth)
    browser.sign_in(user)
    assert browser.title().startswith("Allow ")  # no picker: the EHR chose
    assert f"Ada {patient[1]}" in browser.page.text  # type: ignore[union-attr]
    body = auth.exchange(smart_server, redirect_params(browser.consent())["code"]).json()
    assert body["patient"] == patient[0] and body["encounter"] == encounter
    assert body["fhirContext"] == [{"reference": f"Encounter/{encounter}"}]
    assert body["need_patient_banner"] is False
    assert body["scope"] == "launch openid fhirUser patient/*.rs"


def test_launch_for_another_user_asks_to_sign_in_as_that_user(
    smart_server: LiveServer, patient: tuple[str, str]
) -> None:
    launch = ehr_launch(smart_server, {"patient": patient[0], "fhirUser": "Practitioner/someone"}).json()["launch"]
    auth = authorization(smart_server, register_app(smart_server), "launch patient/*.rs", launch=launch)
    browser = Browser(smart_server)
    browser.open(auth)
    page = browser.sign_in(register_user(smart_server, fhir_user="Practitioner/else"))
    assert browser.title() == "Sign in" and "sign in as that user" in page.text


def test_launch_needs_an_ehr_client(smart_server: LiveServer, patient: tuple[str, str]) -> None:
    app = register_app(smart_server, "confidential-symmetric")
    refused = httpx.post(urls(smart_server).launch, json={"patient": patient[0]}, auth=(app.client_id, str(app.secret)))
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    anonymous = httpx.post(urls(smart_server).launch, json={"patient": patient[0]})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"


def test_launch_context_must_name_stored_resources(smart_server: LiveServer) -> None:
    response = ehr_launch(smart_server, {"patient": "no-such-patient"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert "Patient" in response.json()["error_description"]


def test_form_encoded_launch_with_client_secret_post(smart_server: LiveServer, patient: tuple[str, str]) -> None:
    ehr = register_app(smart_server, "confidential-symmetric", ehr_launch=True)
    response = httpx.post(
        urls(smart_server).launch,
        data={
            "client_id": ehr.client_id,
            "client_secret": str(ehr.secret),
            "patient": patient[0],
            "need_patient_banner": "true",
            "fhirContext": '[{"reference": "Patient/x"}]',
        },
    )
    assert response.status_code == 201, response.text
    context = find_launch(smart_server.app.ctx.auth.engine, response.json()["launch"])
    assert context == {"patient": patient[0], "need_patient_banner": True, "fhirContext": [{"reference": "Patient/x"}]}
