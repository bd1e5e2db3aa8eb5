"""End-to-end fixtures: the FHIR server with SMART authorization on, a patient and a practitioner who can
sign in, and a loopback web server for the JavaScript app pages (``tests/e2e/js``).

Nothing here talks to the authorization server's internals beyond registering a client and a user, as
``fhir-server clients add`` and ``fhir-server users add`` would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from smart_auth.clients import PUBLIC, add_client
from smart_auth.users import add_user
from tests.conftest import LiveServer, live_server, unique
from tests.tokens import mint

JS_DIR = Path(__file__).parent / "js"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Person:
    """A seeded Patient: its id and the name a client should show."""

    id: str
    family: str
    given: str

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"


@dataclass(frozen=True)
class Clinician:
    """A user of the sign-in page, linked to a Practitioner (so a standalone launch shows the picker)."""

    login: str
    password: str
    fhir_user: str


@pytest.fixture(scope="module")
def smart_server(database_url: str) -> Iterator[LiveServer]:
    with live_server(database_url, auth=True) as server:
        yield server


def system_token(server: LiveServer) -> str:
    """A Backend Services token minted with the server's own key, for seeding data through the API."""
    return mint(server, "system/*.cruds", "e2e-seed")


def create(server: LiveServer, resource: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {system_token(server)}"}
    with httpx.Client(base_url=server.base_url + "/", headers=headers, timeout=60) as api:
        response = api.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture(scope="module")
def patient(smart_server: LiveServer) -> Person:
    """A Patient with a family name no other test uses, so the picker's name search finds only it."""
    family, given = unique("Lovelace"), "Ada"
    body = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1815-12-10",
    }
    created = create(smart_server, body)
    assert created["name"][0]["family"] == family
    return Person(created["id"], family, given)


@pytest.fixture(scope="module")
def clinician(smart_server: LiveServer) -> Clinician:
    practitioner = create(smart_server, {"resourceType": "Practitioner", "name": [{"family": unique("Hopper")}]})
    auth = smart_server.app.ctx.auth
    assert auth is not None
    login = unique("clinician")
    fhir_user = f"Practitioner/{practitioner['id']}"
    add_user(auth.engine, login, PASSWORD, fhir_user=fhir_user)
    return Clinician(login, PASSWORD, fhir_user)


def register_public_app(server: LiveServer, name: str, redirect_uri: str) -> str:
    """Register a public client (no secret, PKCE only) with the default app scopes; its client id."""
    auth = server.app.ctx.auth
    assert auth is not None
    client, secret = add_client(auth.engine, name, PUBLIC, redirect_uris=[redirect_uri], client_id=unique("app-"))
    assert secret is None
    return client.client_id


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's output."""


@pytest.fixture(scope="module")
def app_origin() -> Iterator[str]:
    """``http://127.0.0.1:PORT``: a static web server on loopback for ``tests/e2e/js`` (app pages and the
    fhirclient browser build in ``node_modules``), a different origin from the FHIR server, as a real app is."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(JS_DIR)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)
