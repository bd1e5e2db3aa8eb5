"""``fhir-server import``: NDJSON, collection and transaction Bundles, folders, errors reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import LiveServer, live_server, unique
from tests.shared_data import shared


def run_import(database_url: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FHIR_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "import", "--quiet", *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ndjson_import_reports_bad_lines(tmp_path: Path, server: LiveServer, client: httpx.Client) -> None:
    ident = unique()
    lines = [
        json.dumps(
            {"resourceType": "Patient", "id": f"{ident}-a", "identifier": [{"system": "urn:imp", "value": ident}]}
        ),
        "{not json",
        json.dumps({"resourceType": "Patient", "gender": "invalid-code"}),
        json.dumps(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": f"Patient/{ident}-a"},
            }
        ),
    ]
    file = tmp_path / "data.ndjson"
    file.write_text("\n".join(lines) + "\n")
    result = run_import(server.settings.database_url, file)
    assert result.returncode == 1
    assert "imported 2 resources; 2 errors" in result.stdout
    assert "data.ndjson:2" in result.stderr and "data.ndjson:3" in result.stderr
    assert client.get(f"Patient/{ident}-a").status_code == 200
    assert client.get(f"Observation?subject=Patient/{ident}-a").json()["total"] == 1
    again = run_import(server.settings.database_url, file)  # idempotent for resources with ids
    assert "imported 2 resources" in again.stdout
    assert client.get(f"Patient/{ident}-a").json()["meta"]["versionId"] == "2"


def test_collection_bundle_import(tmp_path: Path, server: LiveServer, client: httpx.Client) -> None:
    ident = unique()
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": f"{ident}-{i}", "gender": "female"}} for i in range(3)
        ],
    }
    file = tmp_path / "collection.json"
    file.write_text(json.dumps(bundle))
    result = run_import(server.settings.database_url, file)
    assert result.returncode == 0, result.stderr
    assert "imported 3 resources; 0 errors" in result.stdout
    assert client.get(f"Patient/{ident}-2").json()["gender"] == "female"


def test_folder_import_loads_batch_bundles_first(fresh_database_url: str) -> None:
    """The patient bundles' conditional references need the two shared batch bundles loaded first."""
    folder = shared("synthea", "fhir-data-pipes-r4")
    result = run_import(fresh_database_url, folder)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported 14751 resources; 0 errors" in result.stdout
    with live_server(fresh_database_url) as running, httpx.Client(base_url=running.base_url + "/") as http:
        assert http.get("Provenance?_count=0").json()["total"] == 20
        assert http.get("Organization?_count=0").json()["total"] == 1191


def test_broken_file_is_reported_and_the_rest_imported(
    tmp_path: Path, server: LiveServer, client: httpx.Client
) -> None:
    ident = unique()
    (tmp_path / "a-broken.json").write_text('{"resourceType": "Bundle", "type": "transaction", "entry": [')
    (tmp_path / "b-good.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": ident}) + "\n")
    result = run_import(server.settings.database_url, tmp_path)
    assert result.returncode == 1
    assert "a-broken.json" in result.stderr
    assert "imported 1 resources; 1 errors" in result.stdout
    assert client.get(f"Patient/{ident}").status_code == 200
