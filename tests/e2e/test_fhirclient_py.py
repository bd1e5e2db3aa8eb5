"""The SMART Python client (PyPI ``fhirclient``) authorizes through its own OAuth code and reads a Patient.

fhirclient finds the endpoints in the CapabilityStatement's ``oauth-uris`` extension (it does not read
``.well-known/smart-configuration``), builds the authorize URL (4.4.0 always adds PKCE S256), exchanges the
code in ``handle_callback`` and refreshes in ``reauthorize``. A person's part, signing in, picking the
patient and approving, is played over httpx on our server-rendered pages, as a browser without JavaScript
submits them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fhirclient import client as smart_client
from fhirclient.models.patient import Patient

from tests.conftest import LiveServer
from tests.e2e.conftest import Clinician, Person, register_public_app
from tests.e2e.pages import read_page

# Never loaded: the test takes the code from the redirect the consent page answers with.
REDIRECT_URI = "http://127.0.0.1:9/fhirclient-py/callback"
SCOPE = "patient/Patient.read openid fhirUser offline_access"


def consent_redirect(authorize_url: str, clinician: Clinician, patient: Person) -> httpx.Response:
    """Sign in, pick ``patient``, approve every requested scope: the consent page's answer."""
    with httpx.Client(timeout=60) as browser:
        page = read_page(browser.get(authorize_url))
        assert page.heading == "Sign in"
        page = read_page(
            page.submit(browser, page.form_with("password"), login=clinician.login, password=clinician.password)
        )
        assert page.heading == "Choose a patient"
        page = read_page(page.submit(browser, page.form_with("name"), name=patient.family))
        assert page.heading == "Choose a patient"
        page = read_page(page.submit(browser, page.form_with("patient"), patient=patient.id))
        assert page.heading == "Allow E2E fhirclient.py app access?"
        assert f"Patient: {patient.name}" in page.text
        return page.submit(browser, page.form_with("approve"), button="Allow checked access")


def test_fhirclient_py_authorizes_and_reads_the_patient(
    smart_server: LiveServer, patient: Person, clinician: Clinician
) -> None:
    client_id = register_public_app(smart_server, "E2E fhirclient.py app", REDIRECT_URI)
    saved: list[dict[str, Any]] = []
    settings = {"app_id": client_id, "api_base": smart_server.base_url, "redirect_uri": REDIRECT_URI, "scope": SCOPE}
    app = smart_client.FHIRClient(settings=settings, save_func=saved.append)

    authorize_url = app.authorize_url
    root = smart_server.base_url.removesuffix("/fhir")
    assert authorize_url.startswith(f"{root}/auth/authorize?")
    sent = {name: values[0] for name, values in parse_qs(urlsplit(authorize_url).query).items()}
    assert sent["code_challenge_method"] == "S256"
    assert sent["aud"] == smart_server.base_url
    assert sent["scope"] == f"launch/patient {SCOPE}"  # fhirclient asks for a patient when it has none

    answer = consent_redirect(authorize_url, clinician, patient)
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    assert callback.startswith(REDIRECT_URI + "?")
    assert parse_qs(urlsplit(callback).query)["state"] == [sent["state"]]

    # A web app keeps the client between requests as its saved state (with the PKCE verifier).
    resumed = smart_client.FHIRClient(state=saved[-1], save_func=saved.append)
    resumed.handle_callback(callback)

    assert resumed.ready
    assert resumed.patient_id == patient.id
    context = resumed.launch_context
    assert context["patient"] == patient.id
    assert context["token_type"] == "Bearer"
    assert context["scope"].split() == f"launch/patient {SCOPE}".split()
    read = Patient.read(patient.id, resumed.server)
    assert read.id == patient.id
    assert read.name[0].family == patient.family
    assert read.gender == "female"
    assert resumed.human_name(resumed.patient.name[0]) == patient.name

    # fhirclient refreshes with grant_type, refresh_token and client_id (no secret: a public client).
    auth = resumed.server.auth
    first_access, first_refresh = auth.access_token, auth.refresh_token
    assert resumed.reauthorize()
    assert auth.access_token not in (None, first_access)
    assert auth.refresh_token not in (None, first_refresh)  # rotated
    assert resumed.launch_context["patient"] == patient.id
    assert Patient.read(patient.id, resumed.server).name[0].family == patient.family
