"""The official SMART JavaScript client (npm ``fhirclient``) does a standalone launch against this server in
headless Chromium, as a person would: launch page -> our sign-in, patient picker and consent pages -> the
app's redirect page, where ``FHIR.oauth2.ready()`` exchanges the code (public client, PKCE S256), the app
refreshes its token once and reads its patient
(https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-standalone-launch).

Needs Node.js, ``npm ci`` in ``tests/e2e/js`` and Debian's Chromium (``.ci/run`` installs both); outside
CI their absence skips the test with the reason, in CI it fails it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import LiveServer, unavailable
from tests.e2e.conftest import JS_DIR, Clinician, Person, register_public_app

CHROMIUM = os.environ.get("FHIR_E2E_CHROMIUM", "/usr/bin/chromium")
SCOPE = "launch/patient patient/Patient.rs openid fhirUser offline_access"
DRIVER_TIMEOUT_S = 180


def pinned_versions() -> dict[str, str]:
    dependencies: dict[str, str] = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    return dependencies


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` executable, once the browser, Node.js and the pinned npm packages are all there."""
    found = shutil.which("node")
    if found is None:
        unavailable("Node.js is not installed (apt-get install -y nodejs npm)")
    if not Path(CHROMIUM).exists():
        unavailable(f"Chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    for package, version in pinned_versions().items():
        manifest = JS_DIR / "node_modules" / package / "package.json"
        installed = json.loads(manifest.read_text())["version"] if manifest.exists() else None
        if installed != version:
            unavailable(f"npm package {package}@{version} is not installed (found {installed}): npm ci in {JS_DIR}")
    assert found is not None
    return found


def run_launch(node: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run the Playwright driver; its one line of JSON output."""
    completed = subprocess.run(
        [node, "standalone_launch.mjs", json.dumps(config)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, f"driver exited {completed.returncode}: {completed.stderr}"
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def test_standalone_launch_reads_the_chosen_patient(
    node: str, smart_server: LiveServer, app_origin: str, patient: Person, clinician: Clinician, tmp_path: Path
) -> None:
    redirect_uri = f"{app_origin}/app/index.html"
    client_id = register_public_app(smart_server, "E2E fhirclient.js app", redirect_uri)
    query = urlencode({"iss": smart_server.base_url, "app": client_id, "scope": SCOPE})
    config = {
        "launchUrl": f"{app_origin}/app/launch.html?{query}",
        "login": clinician.login,
        "password": clinician.password,
        "patientId": patient.id,
        "patientFamily": patient.family,
        "chromium": CHROMIUM,
        "screenshot": str(tmp_path / "failure.png"),
    }

    result = run_launch(node, config)
    report = json.dumps(result, indent=2)

    assert result["error"] is None, report
    assert result["pages"] == ["Sign in", "Choose a patient", "Allow E2E fhirclient.js app access?"]
    assert result["consentText"] == f"Signed in as {clinician.login}. Patient: {patient.name}."
    assert result["consentScopes"] == SCOPE.split()
    authorize = result["authorizeRequest"]
    assert authorize["response_type"] == "code"
    assert authorize["client_id"] == client_id
    assert authorize["redirect_uri"] == redirect_uri
    assert authorize["aud"] == smart_server.base_url
    assert authorize["code_challenge_method"] == "S256"
    assert result["redirect"] == {"code": "present", "state": authorize["state"]}

    exchange, exchanged = result["tokenRequests"][0], result["tokenResponses"][0]
    assert exchange["form"]["grant_type"] == "authorization_code"
    assert exchange["form"]["code"] == "present"
    assert s256(exchange["form"]["code_verifier"]) == authorize["code_challenge"]
    assert "authorization" not in exchange["headers"]  # a public client has no secret to send
    assert exchanged["status"] == 200, report
    token = exchanged["body"]
    assert token["token_type"] == "Bearer"
    assert {token["access_token"], token["id_token"], token["refresh_token"]} == {"present"}
    assert token["patient"] == patient.id
    assert token["need_patient_banner"] is True
    assert token["scope"].split() == SCOPE.split()
    app = result["app"]
    assert app["url"] == redirect_uri  # fhirclient takes code and state off the address once it has the token
    assert app["tokenResponse"]["patient"] == patient.id

    # fhirclient refreshes as a public app does: grant_type and refresh_token, no client_id.
    refresh = result["tokenRequests"][1]["form"]
    assert refresh["grant_type"] == "refresh_token" and "client_id" not in refresh
    assert app["refreshError"] == "", report
    assert result["tokenResponses"][1]["status"] == 200
    assert app["refreshResponse"]["patient"] == patient.id
    assert app["refreshResponse"]["refresh_token"] == "present"
    # The read goes cross-origin from the app's page to /fhir: CORS preflight, then the bearer request.
    assert app["readError"] == "", report
    assert app["patientId"] == patient.id
    assert app["patientName"] == patient.name
