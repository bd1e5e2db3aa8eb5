"""Bulk Data $export over HTTP (https://hl7.org/fhir/uv/bulkdata/export.html), on SQLite and PostgreSQL:
kick-off rules, system/Patient/Group level, _type, _since with deleted, _typeFilter, _elements, the
manifest and files, cancel, a job resumed after its worker died, a second server sharing the work, a
failing job, and the token's access."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.bulk.jobs import JobStore
from fhir_server.storage.engine import make_engine
from fhir_server.storage.model import instant, utc_now
from tests.conftest import LiveServer, live_server, unique
from tests.tokens import mint

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def exporter(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("exports")
    with live_server(database_url, export_dir=str(folder), export_file_resources=3, export_workers=1) as server:
        yield server


@pytest.fixture
def http(exporter: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=exporter.base_url + "/", timeout=60) as client:
        yield client


def _create(http: httpx.Client, body: dict[str, Any]) -> str:
    response = http.post(body["resourceType"], json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _kickoff(http: httpx.Client, path: str, params: Any = None, **kwargs: Any) -> str:
    headers = {**ASYNC, **kwargs.pop("headers", {})}
    response = http.request(kwargs.pop("method", "GET"), path, params=params, headers=headers, **kwargs)
    assert response.status_code == 202, response.text
    return response.headers["content-location"]


def _finished(http: httpx.Client, status_url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(status_url)
        if response.status_code != 202:
            return response
        assert response.headers["retry-after"] == "2" and response.headers["x-progress"]
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.1)


def _manifest(http: httpx.Client, status_url: str) -> dict[str, Any]:
    response = _finished(http, status_url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    manifest: dict[str, Any] = response.json()
    return manifest


def _download(http: httpx.Client, manifest: dict[str, Any], part: str = "output") -> dict[str, list[dict[str, Any]]]:
    """Every file of the manifest part, by type: the parsed NDJSON lines (and each count checked)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in manifest[part]:
        response = http.get(item["url"])
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in response.content.splitlines() if line]
        assert len(lines) == item["count"]
        found.setdefault(item["type"], []).extend(lines)
    return found


def _tagged(tag: str) -> dict[str, Any]:
    return {"tag": [{"system": "urn:export-test", "code": tag}]}


def _record(http: httpx.Client, tag: str) -> dict[str, str]:
    ids = {"patient": _create(http, {"resourceType": "Patient", "meta": _tagged(tag), "name": [{"family": tag}]})}
    subject = {"reference": f"Patient/{ids['patient']}"}
    for n in range(4):
        ids[f"obs{n}"] = _create(
            http,
            {
                "resourceType": "Observation",
                "meta": _tagged(tag),
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0" if n % 2 else "8867-4"}]},
                "subject": subject,
            },
        )
    return ids


def _ids(found: dict[str, list[dict[str, Any]]], resource_type: str, tag: str | None = None) -> set[str]:
    return {
        r["id"]
        for r in found.get(resource_type, [])
        if tag is None or any(t.get("code") == tag for t in r.get("meta", {}).get("tag", []))
    }


# -- kick-off rules ------------------------------------------------------------------------------------------


def test_kickoff_requires_respond_async(http: httpx.Client) -> None:
    response = http.get("$export")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Prefer"]


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ({"_outputFormat": "text/csv"}, "_outputFormat"),
        ({"_type": "Observation,Nonsense"}, "_type"),
        ({"_since": "last week"}, "_since"),
        ({"_typeFilter": "Observation?colour=red"}, "_typeFilter"),
        ({"_typeFilter": "Observation"}, "_typeFilter"),
        ({"includeAssociatedData": "LatestProvenanceResources"}, "includeAssociatedData"),
        ({"frobnicate": "1"}, "frobnicate"),
    ],
)
def test_kickoff_refuses_what_it_cannot_do(http: httpx.Client, params: dict[str, str], expression: str) -> None:
    response = http.get("$export", params=params, headers=ASYNC)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [expression]


def test_patient_level_refuses_types_outside_the_compartment(http: httpx.Client) -> None:
    response = http.get("Patient/$export", params={"_type": "Practitioner"}, headers=ASYNC)
    assert response.status_code == 400 and "compartment" in response.json()["issue"][0]["diagnostics"]


def test_lenient_kickoff_reports_what_it_ignored(http: httpx.Client) -> None:
    tag = unique("lenient")
    _record(http, tag)
    status_url = _kickoff(
        http,
        "$export",
        {"_type": "Patient", "frobnicate": "1", "_typeFilter": f"Patient?_tag=urn:export-test|{tag}"},
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    manifest = _manifest(http, status_url)
    errors = _download(http, manifest, "error")["OperationOutcome"]
    assert "frobnicate" in errors[0]["issue"][0]["diagnostics"]


@pytest.mark.parametrize("output_format", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
def test_all_ndjson_spellings(http: httpx.Client, output_format: str) -> None:
    _kickoff(http, "$export", {"_outputFormat": output_format, "_type": "Patient"})


# -- what is exported ------------------------------------------------------------------------------------------


def test_system_export_manifest_and_files(exporter: LiveServer, http: httpx.Client) -> None:
    tag = unique("system")
    ids = _record(http, tag)
    status_url = _kickoff(http, "$export", {"_type": "Patient,Observation"})
    assert status_url.startswith(exporter.base_url + "/$export-status/")
    manifest = _manifest(http, status_url)
    assert manifest["request"] == f"{exporter.base_url}/$export?_type=Patient%2CObservation"
    assert manifest["requiresAccessToken"] is False
    assert manifest["transactionTime"] <= instant(utc_now())
    assert {item["type"] for item in manifest["output"]} == {"Patient", "Observation"}
    assert all(item["count"] <= 3 for item in manifest["output"])  # files roll over (export_file_resources=3)
    found = _download(http, manifest)
    assert _ids(found, "Observation", tag) == {ids[f"obs{n}"] for n in range(4)}
    assert _ids(found, "Patient", tag) == {ids["patient"]}
    with httpx.Client() as plain:  # the files are what the server stores, byte for byte
        stored = plain.get(f"{exporter.base_url}/Patient/{ids['patient']}").json()
    assert next(p for p in found["Patient"] if p["id"] == ids["patient"]) == stored


def test_since_type_filter_elements_and_deleted(http: httpx.Client) -> None:
    tag = unique("since")
    ids = _record(http, tag)
    time.sleep(0.01)
    since = instant(utc_now())
    time.sleep(0.01)
    changed = http.get(f"Observation/{ids['obs1']}").json()
    changed["status"] = "amended"
    assert http.put(f"Observation/{ids['obs1']}", json=changed).status_code == 200
    assert http.delete(f"Observation/{ids['obs2']}").status_code == 200
    manifest = _manifest(http, _kickoff(http, "$export", {"_type": "Observation", "_since": since}))
    found = _download(http, manifest)
    assert _ids(found, "Observation", tag) == {ids["obs1"]}
    deleted = _download(http, manifest, "deleted")["Bundle"]
    urls = {entry["request"]["url"] for bundle in deleted for entry in bundle["entry"]}
    assert f"Observation/{ids['obs2']}" in urls
    assert all(b["entry"][0]["request"]["method"] == "DELETE" for b in deleted)

    filtered = _manifest(
        http,
        _kickoff(
            http,
            "$export",
            {"_type": "Observation", "_typeFilter": f"Observation?code=8867-4&_tag=urn:export-test|{tag}"},
        ),
    )
    assert _ids(_download(http, filtered), "Observation") == {ids["obs0"]}  # obs2 (8867-4) was deleted

    subset = _manifest(
        http,
        _kickoff(
            http,
            "$export",
            {"_type": "Patient", "_elements": "Patient.name", "_typeFilter": f"Patient?_id={ids['patient']}"},
        ),
    )
    (patient,) = _download(http, subset)["Patient"]
    assert set(patient) == {"resourceType", "id", "meta", "name"}
    assert any(t.get("code") == "SUBSETTED" for t in patient["meta"]["tag"])


def test_patient_and_group_level_export_only_the_patients_data(http: httpx.Client) -> None:
    tag = unique("group")
    first, second = _record(http, tag), _record(http, tag)
    practitioner = _create(http, {"resourceType": "Practitioner", "meta": _tagged(tag)})
    group = _create(
        http,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{first['patient']}"}}],
        },
    )
    everyone = _download(http, _manifest(http, _kickoff(http, "Patient/$export")))
    assert {first["patient"], second["patient"]} <= _ids(everyone, "Patient")
    assert {first["obs0"], second["obs3"]} <= _ids(everyone, "Observation")
    assert practitioner not in _ids(everyone, "Practitioner")  # not in the Patient compartment

    members = _download(http, _manifest(http, _kickoff(http, f"Group/{group}/$export")))
    assert _ids(members, "Patient") == {first["patient"]}
    assert _ids(members, "Observation") == {first[f"obs{n}"] for n in range(4)}

    one = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "patient", "valueReference": {"reference": f"Patient/{second['patient']}"}},
        ],
    }
    chosen = _download(http, _manifest(http, _kickoff(http, "Patient/$export", method="POST", json=one)))
    assert set(chosen) == {"Patient"} and _ids(chosen, "Patient") == {second["patient"]}
    assert http.get("Group/nope/$export", headers=ASYNC).status_code == 404


# -- the job's life ------------------------------------------------------------------------------------------------


def test_cancel(http: httpx.Client) -> None:
    status_url = _kickoff(http, "$export")
    cancelled = http.delete(status_url)
    assert cancelled.status_code == 202
    assert http.get(status_url).status_code == 404
    assert http.delete(status_url).status_code == 404


def test_an_interrupted_job_is_resumed_by_another_server(fresh_database_url: str, tmp_path: Path) -> None:
    database_url = fresh_database_url  # no other server's workers take these jobs
    settings = {"export_dir": str(tmp_path), "export_stale_seconds": 1}
    with (
        live_server(database_url, export_workers=0, **settings) as idle,
        httpx.Client(base_url=idle.base_url + "/") as http,
    ):
        tag = unique("resume")
        ids = _record(http, tag)
        status_url = _kickoff(
            http, "$export", {"_type": "Observation", "_typeFilter": f"Observation?_tag=urn:export-test|{tag}"}
        )
        engine = make_engine(database_url)
        dead = JobStore(engine).claim("a-worker-that-dies", stale_seconds=1)  # running, then never beats again
        engine.dispose()
        assert dead is not None and dead.id == status_url.rsplit("/", 1)[1]
        assert http.get(status_url).headers["x-progress"] == "started"
        with live_server(database_url, export_workers=1, **settings) as rescuer, httpx.Client() as other:
            manifest = _manifest(other, f"{rescuer.base_url}/$export-status/{dead.id}")
            assert _ids(_download(other, manifest), "Observation") == {ids[f"obs{n}"] for n in range(4)}


def test_a_second_server_runs_the_jobs_another_accepted(fresh_database_url: str, tmp_path: Path) -> None:
    database_url = fresh_database_url  # no other server's workers take these jobs
    folder = {"export_dir": str(tmp_path)}
    with (
        live_server(database_url, export_workers=0, **folder) as front,
        live_server(database_url, export_workers=2, **folder) as back,
    ):
        with httpx.Client(base_url=front.base_url + "/") as http:
            tag = unique("shared")
            ids = _record(http, tag)
            query = {"_type": "Patient", "_typeFilter": f"Patient?_tag=urn:export-test|{tag}"}
            status_urls = [_kickoff(http, "$export", query) for _ in range(4)]
            manifests = [_manifest(http, url) for url in status_urls]  # polled at the front, run at the back
            for manifest in manifests:
                assert _ids(_download(http, manifest), "Patient") == {ids["patient"]}
        assert back.app.ctx.settings.export_workers == 2
        engine = make_engine(database_url)
        jobs = [JobStore(engine).get(url.rsplit("/", 1)[1]) for url in status_urls]
        engine.dispose()
        assert all(job is not None and job.status == "completed" and job.worker for job in jobs)


def test_claims_never_hand_one_job_to_two_workers(fresh_database_url: str, tmp_path: Path) -> None:
    database_url = fresh_database_url  # no other server's workers take these jobs
    with (
        live_server(database_url, export_workers=0, export_dir=str(tmp_path)) as idle,
        httpx.Client(base_url=idle.base_url + "/") as http,
    ):
        jobs = {_kickoff(http, "$export").rsplit("/", 1)[1] for _ in range(8)}
    engine = make_engine(database_url)
    store = JobStore(engine)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(worker: str) -> None:
        while (job := store.claim(worker, stale_seconds=600)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    mine = [job for job in claimed if job in jobs]
    assert sorted(mine) == sorted(jobs)  # each exactly once


def test_a_failing_job_answers_500(fresh_database_url: str, tmp_path: Path) -> None:
    database_url = fresh_database_url  # no other server's workers take these jobs
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should be")
    with (
        live_server(database_url, export_dir=str(blocker), export_workers=1) as server,
        httpx.Client(base_url=server.base_url + "/") as http,
    ):
        failed = _finished(http, _kickoff(http, "$export", {"_type": "Patient"}))
        assert failed.status_code == 500
        assert failed.json()["resourceType"] == "OperationOutcome"


# -- authorization --------------------------------------------------------------------------------------------------


def test_export_under_a_token(fresh_database_url: str, tmp_path: Path) -> None:
    database_url = fresh_database_url  # no other server's workers take these jobs
    with live_server(database_url, auth=True, export_dir=str(tmp_path), export_workers=1) as server:

        def client(scope: str, client_id: str, patient: str | None = None) -> httpx.Client:
            token = mint(server, scope, client_id, patient=patient)
            return httpx.Client(base_url=server.base_url + "/", headers={"Authorization": f"Bearer {token}"})

        with client("system/*.cruds", "admin") as admin:
            tag = unique("auth")
            a, b = _record(admin, tag), _record(admin, tag)
        with httpx.Client(base_url=server.base_url + "/") as anonymous:
            assert anonymous.get("$export", headers=ASYNC).status_code == 401
        with client("system/Patient.rs", "narrow") as narrow:
            refused = narrow.get("$export", params={"_type": "Observation"}, headers=ASYNC)
            assert refused.status_code == 403
        with client("system/*.rs", "exporter") as exporter, client("system/*.rs", "someone-else") as other:
            status_url = _kickoff(exporter, "$export", {"_type": "Observation"})
            assert other.get(status_url).status_code == 404  # not the client that asked
            manifest = _manifest(exporter, status_url)
            assert manifest["requiresAccessToken"] is True
            assert other.get(manifest["output"][0]["url"]).status_code == 404
            assert {a["obs0"], b["obs0"]} <= _ids(_download(exporter, manifest), "Observation")
        with client("patient/*.rs", "portal", patient=a["patient"]) as portal:
            found = _download(portal, _manifest(portal, _kickoff(portal, "Patient/$export")))
            assert _ids(found, "Observation", tag) == {a[f"obs{n}"] for n in range(4)}
            assert _ids(found, "Patient", tag) == {a["patient"]}


def test_capability_statement_lists_the_export_operations(http: httpx.Client) -> None:
    statement = http.get("metadata").json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in statement["instantiates"]
    rest = statement["rest"][0]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"} in rest[
        "operation"
    ]
    by_type = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in rest["resource"]}
    assert "export" in by_type["Patient"] and "export" in by_type["Group"] and "everything" in by_type["Patient"]


def test_finished_exports_expire(fresh_database_url: str, tmp_path: Path) -> None:
    with (
        live_server(fresh_database_url, export_dir=str(tmp_path), export_expiry_seconds=1, export_workers=1) as server,
        httpx.Client(base_url=server.base_url + "/") as http,
    ):
        _create(http, {"resourceType": "Patient"})
        status_url = _kickoff(http, "$export", {"_type": "Patient"})
        manifest = _manifest(http, status_url)
        job_id = status_url.rsplit("/", 1)[1]
        assert (tmp_path / job_id).is_dir()
        deadline = time.monotonic() + 30
        while http.get(status_url).status_code != 404:  # the worker's sweep removes it once expired
            assert time.monotonic() < deadline, "the export did not expire"
            time.sleep(0.2)
        assert http.get(manifest["output"][0]["url"]).status_code == 404
        assert not (tmp_path / job_id).exists()


def test_patient_level_since_lists_no_deletions_of_other_patients(http: httpx.Client) -> None:
    tag = unique("pdeleted")
    ids = _record(http, tag)
    since = instant(utc_now())
    time.sleep(0.01)
    assert http.delete(f"Observation/{ids['obs0']}").status_code == 200
    manifest = _manifest(http, _kickoff(http, "Patient/$export", {"_since": since, "_type": "Observation"}))
    assert manifest["deleted"] == []  # a deleted resource's compartment can no longer be checked
