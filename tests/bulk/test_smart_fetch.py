"""A bulk client nobody here wrote: smart-fetch (https://github.com/smart-on-fhir/smart-fetch, the SMART
team's export tool, pinned in the dev extras) runs its ``bulk`` command against a server with authorization
on, on SQLite and PostgreSQL.

smart-fetch authenticates as a SMART Backend Services client (``private_key_jwt`` signed with a key from a
JWKS file, scopes ``system/<Type>.read`` for the types it knows), reads ``metadata`` and
``.well-known/smart-configuration``, kicks off ``$export`` with ``_type`` (its 15 patient-data types) and,
by default, a ``_typeFilter`` on Observation categories, polls the status URL respecting ``Retry-After``,
downloads every file of the manifest, then DELETEs the job. What it downloaded must be what the database
holds: the count per type (``_summary=count``) and each resource exactly as the server serves it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from smart_fetch.resources import PATIENT_TYPES

from fhir_server.storage.model import instant, utc_now
from tests.auth.flows import App, register_backend
from tests.conftest import LiveServer, fresh_database, live_server, unique
from tests.shared_data import IN_CI, SHARED, shared
from tests.tokens import mint

SYNTHEA_BUNDLES = 3  # the smallest self-contained transaction Bundles of smart-on-fhir-r4
RUN_SECONDS = 180  # smart-fetch retries server errors for minutes; a failing run must not hang the suite
# smart-fetch's default Observation _typeFilter (smart_fetch/filtering.py, Filters.__init__, non-Epic server)
DEFAULT_CATEGORIES = "social-history,vital-signs,imaging,laboratory,survey,exam,procedure,therapy,activity"


@dataclass
class World:
    server: LiveServer
    admin: httpx.Client  # system/*.cruds, to load data and count
    tag: str
    ids: dict[str, str]  # key in ``_record`` -> Type/id
    folder: Path

    def client(self, alg: str) -> tuple[App, Path]:
        """A new Backend Services client allowed ``system/*.rs``, and its private JWKS file as smart-fetch
        reads it (a key with ``kid``, ``alg`` and ``key_ops: [sign]``: cumulus_fhir_support/auth.py)."""
        app = register_backend(self.server, alg=alg, scope="system/*.rs")
        assert app.key is not None
        private = {**app.key.as_dict(private=True), "alg": alg, "key_ops": ["sign"]}
        path = self.folder / f"{app.client_id}.jwks"
        path.write_bytes(orjson.dumps({"keys": [private]}))
        return app, path


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("smart-fetch")
    with (
        fresh_database(database_url, folder) as url,  # no other server's export workers take its jobs
        live_server(
            url, auth=True, export_dir=str(folder / "exports"), export_file_resources=50, export_workers=1
        ) as server,
    ):
        headers = {"Authorization": f"Bearer {mint(server, 'system/*.cruds', 'loader')}"}
        with httpx.Client(base_url=server.base_url + "/", headers=headers, timeout=120) as admin:
            tag = unique("sf")
            record = _record(tag)
            locations = _post_bundle(admin, record)
            ids = {
                e["fullUrl"].removeprefix("urn:uuid:"): "/".join(loc.split("/")[-4:-2])
                for e, loc in zip(record["entry"], locations, strict=True)
            }
            for path in _synthea_bundles():
                _post_bundle(admin, orjson.loads(path.read_bytes()))
            yield World(server, admin, tag, ids, folder)


def _synthea_bundles() -> list[Path]:
    """A few real Synthea patients when ``../shared`` is there (always in CI); none otherwise."""
    if not IN_CI and not (SHARED / "synthea" / "smart-on-fhir-r4").is_dir():
        return []
    bundles = shared("synthea", "smart-on-fhir-r4").glob("*.json")
    return sorted(bundles, key=lambda p: (p.stat().st_size, p.name))[:SYNTHEA_BUNDLES]


def _post_bundle(admin: httpx.Client, bundle: dict[str, Any]) -> list[str]:
    """Apply a transaction; the created resources' locations (``.../Type/id/_history/1``)."""
    response = admin.post("", json=bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert all(e["response"]["status"].startswith("201") for e in entries)
    return [e["response"]["location"] for e in entries]


def _record(tag: str) -> dict[str, Any]:
    """A patient with one resource of each type smart-fetch exports (so each has a file even without
    ``../shared``), an Observation without a category (outside its default filter) and a Practitioner
    (a type it does not ask for)."""
    patient, code = {"reference": "urn:uuid:p"}, {"text": "test"}
    resources: dict[str, dict[str, Any]] = {
        "p": {"resourceType": "Patient", "name": [{"family": tag}]},
        "e": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": patient},
        "a": {"resourceType": "AllergyIntolerance", "patient": patient, "code": code},
        "c": {"resourceType": "Condition", "subject": patient, "code": code},
        "dv": {"resourceType": "Device", "patient": patient},
        "dr": {"resourceType": "DiagnosticReport", "status": "final", "code": code, "subject": patient},
        "doc": {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": patient,
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}],
        },
        "eoc": {"resourceType": "EpisodeOfCare", "status": "active", "patient": patient},
        "i": {
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": code,
            "patient": patient,
            "occurrenceDateTime": "2024-01-02",
        },
        "md": {"resourceType": "MedicationDispense", "status": "completed", "medicationCodeableConcept": code},
        "mr": {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": code,
            "subject": patient,
        },
        "vital": {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": patient,
        },
        "uncategorised": {"resourceType": "Observation", "status": "final", "code": code, "subject": patient},
        "pr": {"resourceType": "Procedure", "status": "completed", "subject": patient},
        "sr": {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": patient},
        "sp": {"resourceType": "Specimen", "subject": patient},
        "prac": {"resourceType": "Practitioner", "name": [{"family": tag}]},
    }
    meta = {"tag": [{"system": "urn:smart-fetch-test", "code": tag}]}
    entries = [
        {
            "fullUrl": f"urn:uuid:{key}",
            "resource": {**body, "meta": meta},
            "request": {"method": "POST", "url": body["resourceType"]},
        }
        for key, body in resources.items()
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# -- running smart-fetch ---------------------------------------------------------------------------------------


@dataclass
class Run:
    folder: Path
    output: subprocess.CompletedProcess[str]

    def resources(self, part: str = "") -> dict[str, list[dict[str, Any]]]:
        """The files it wrote (``Type.001.ndjson`` in the folder, ``deleted/``, ``error/``), by type."""
        found: dict[str, list[dict[str, Any]]] = {}
        for path in sorted((self.folder / part).glob("*.ndjson")):
            if path.name == "log.ndjson":
                continue
            lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
            found.setdefault(path.name.split(".", 1)[0], []).extend(lines)
        return found

    def log(self) -> list[dict[str, Any]]:
        """Its bulk log (https://github.com/smart-on-fhir/bulk-data-client/wiki/Bulk-Data-Export-Log-Items)."""
        return [orjson.loads(line) for line in (self.folder / "log.ndjson").read_bytes().splitlines()]


def smart_fetch(world: World, key: tuple[App, Path], *args: str) -> Run:
    """``smart-fetch bulk`` into a new folder, as its README shows it, authenticated with ``key``."""
    app, jwks = key
    folder = world.folder / unique("out")
    command = [
        *(sys.executable, "-m", "smart_fetch.cli.main", "bulk", str(folder)),
        *("--fhir-url", world.server.base_url, "--smart-client-id", app.client_id, "--smart-key", str(jwks)),
        *("--no-compression", *args),
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "200"}
    output = subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS, env=env)
    details = f"{output.stdout}\n{output.stderr}"
    if (folder / "log.ndjson").exists():
        details += "\n" + (folder / "log.ndjson").read_text()
    assert output.returncode == 0, details
    return Run(folder, output)


def count(admin: httpx.Client, resource_type: str, **params: str) -> int:
    response = admin.get(resource_type, params={**params, "_summary": "count"})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def served(admin: httpx.Client, resource_type: str) -> dict[str, dict[str, Any]]:
    """Every resource of a type as the server serves it in a search, by id (all pages)."""
    found: dict[str, dict[str, Any]] = {}
    url: str | None = f"{resource_type}?_count=500"
    while url is not None:
        response = admin.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        found.update({e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])})
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return found


def by_id(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = [r["id"] for r in resources]
    assert len(ids) == len(set(ids)), "a resource was exported twice"
    return dict(zip(ids, resources, strict=True))


# -- the tests -------------------------------------------------------------------------------------------------


def test_smart_fetch_exports_what_the_database_holds(world: World) -> None:
    run = smart_fetch(world, world.client("RS384"), "--no-default-filters")
    found = run.resources()
    expected = {t: count(world.admin, t) for t in PATIENT_TYPES}
    assert all(expected.values()), expected  # the fixture has every type: each comparison below means something
    assert {t: len(found.get(t, [])) for t in PATIENT_TYPES} == expected
    assert set(found) == set(PATIENT_TYPES)  # nothing it did not ask for (Practitioner, Claim, ...)
    for resource_type in PATIENT_TYPES:
        assert by_id(found[resource_type]) == served(world.admin, resource_type), resource_type
    assert not run.resources("error") and not run.resources("deleted")

    events = {event["eventId"]: event for event in run.log()}
    assert events["export_complete"]["eventDetail"]["resources"] == sum(expected.values())
    kickoff = events["kickoff"]["eventDetail"]
    assert kickoff["errorCode"] is None and kickoff["softwareName"] == "fhir-server"
    assert set(kickoff["requestParameters"]["_type"].split(",")) == set(PATIENT_TYPES)
    status_url = events["kickoff"]["exportId"]  # smart-fetch DELETEs the job once it has every file
    assert status_url.startswith(f"{world.server.base_url}/$export-status/")
    assert world.admin.get(status_url).status_code == 404


def test_smart_fetch_default_observation_filter(world: World) -> None:
    """Its default ``_typeFilter=Observation?category=a,b,...`` (commas URL-quoted once more) is a search."""
    run = smart_fetch(world, world.client("ES384"), "--type", "Observation")
    observations = by_id(run.resources()["Observation"])
    expected = count(world.admin, "Observation", category=DEFAULT_CATEGORIES)
    assert len(observations) == expected
    assert world.ids["vital"].split("/")[1] in observations
    assert world.ids["uncategorised"].split("/")[1] not in observations
    assert set(run.resources()) == {"Observation"}


@dataclass
class SinceRun:
    run: Run
    changed: list[str]  # Patient ids: one updated and one created after _since
    deleted: str  # an Observation created and deleted after _since


@pytest.fixture(scope="module")
def since_run(world: World) -> SinceRun:
    """``smart-fetch bulk --since T`` after changes at T: an update, a create, a delete."""
    admin, tag = world.admin, unique("since")
    patient = admin.post("Patient", json={"resourceType": "Patient", "name": [{"family": tag}]}).json()
    time.sleep(0.01)
    since = instant(utc_now())
    time.sleep(0.01)
    assert admin.put(f"Patient/{patient['id']}", json={**patient, "gender": "unknown"}).status_code == 200
    new = admin.post("Patient", json={"resourceType": "Patient", "name": [{"family": tag}]}).json()
    gone = admin.post("Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": tag}})
    assert admin.delete(f"Observation/{gone.json()['id']}").status_code == 200
    run = smart_fetch(world, world.client("ES384"), "--type", "Patient,Observation", "--since", since)
    return SinceRun(run, [patient["id"], new["id"]], gone.json()["id"])


def test_smart_fetch_since_brings_what_changed(world: World, since_run: SinceRun) -> None:
    found = since_run.run.resources()
    assert set(found) == {"Patient"}
    assert by_id(found["Patient"]) == {id: world.admin.get(f"Patient/{id}").json() for id in since_run.changed}


def test_smart_fetch_since_brings_what_was_deleted(since_run: SinceRun) -> None:
    deleted = since_run.run.resources("deleted").get("Bundle", [])
    requests = [entry["request"] for bundle in deleted for entry in bundle["entry"]]
    assert requests == [{"method": "DELETE", "url": f"Observation/{since_run.deleted}"}]
