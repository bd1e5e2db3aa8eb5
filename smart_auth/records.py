"""The FHIR resources the authorization pages show: patients to pick (searched by name) and their
encounters, read from the server's own repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.search.query import parse_search
from fhir_server.storage.repository import Repository

PICKER_SIZE = 20


@dataclass(frozen=True)
class PatientChoice:
    id: str
    name: str
    birth_date: str
    gender: str


@dataclass(frozen=True)
class EncounterChoice:
    id: str
    label: str
    start: str
    status: str


class Records:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    def search_patients(self, name: str = "") -> list[PatientChoice]:
        """Patients whose name matches ``name`` (all patients when blank), at most ``PICKER_SIZE``."""
        params = [("name", name.strip())] if name.strip() else []
        return [_patient(r) for r in self._search("Patient", [*params, ("_count", str(PICKER_SIZE))])]

    def patient(self, id: str) -> PatientChoice | None:
        found = self._search("Patient", [("_id", id)]) if id else []
        return _patient(found[0]) if found else None

    def encounters(self, patient_id: str) -> list[EncounterChoice]:
        params = [("patient", f"Patient/{patient_id}"), ("_count", str(PICKER_SIZE * 5))]
        return [_encounter(r) for r in self._search("Encounter", params)]

    def encounter(self, id: str, patient_id: str) -> EncounterChoice | None:
        """The encounter ``id`` if it is one of the patient's."""
        found = self._search("Encounter", [("_id", id), ("patient", f"Patient/{patient_id}")]) if id else []
        return _encounter(found[0]) if found else None

    def _search(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        try:
            query = parse_search(resource_type, params)
            page = self.repository.read(lambda unit: unit.search(query))
        except FhirError:
            return []
        return [stored.resource() for stored in page.matches]


def _patient(resource: dict[str, Any]) -> PatientChoice:
    return PatientChoice(
        resource["id"], human_name(resource), resource.get("birthDate", ""), resource.get("gender", "")
    )


def human_name(resource: dict[str, Any]) -> str:
    """The first name of a Patient or Practitioner as people write it (text, or given names and family)."""
    for name in resource.get("name", []):
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
        if any(parts):
            return " ".join(p for p in parts if p)
    return f"{resource.get('resourceType', 'Patient')}/{resource.get('id', '')}"


def _encounter(resource: dict[str, Any]) -> EncounterChoice:
    kinds = [
        t.get("text") or next((c.get("display") for c in t.get("coding", [])), None) for t in resource.get("type", [])
    ]
    klass = resource.get("class", {})
    label = next((k for k in kinds if k), None) or klass.get("display") or klass.get("code") or "Encounter"
    start = resource.get("period", {}).get("start", "")
    return EncounterChoice(resource["id"], label, start, resource.get("status", ""))
