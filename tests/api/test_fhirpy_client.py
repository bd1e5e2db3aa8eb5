"""A real third-party client, fhirpy's ``SyncFHIRClient``, against the live server on each backend.

fhirpy builds its own query strings and follows the ``next`` links the server hands back, so these tests
check paging, ``_sort``, ``_include``/``_revinclude``, chains, ``_has`` and counting the way client code
out in the world exercises them: https://github.com/beda-software/fhir-py
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome
from fhirpy.lib import SyncFHIRResource, SyncFHIRSearchSet

from tests.conftest import LiveServer, unique

# (given name, birth date) of the cohort's patients; Dee has no observations.
PEOPLE = [("Ann", "1970-01-01"), ("Bob", "1980-01-01"), ("Cid", "1990-01-01"), ("Dee", "2000-01-01")]
# Observation i is taken on 2020-01-0{i+1} from PEOPLE[SUBJECT_OF[i]].
SUBJECT_OF = [0, 1, 2, 0, 1, 2, 0]


@dataclass(frozen=True)
class Cohort:
    """What fhirpy created: patients by given name and observations in date order, all under one family."""

    family: str
    code: str
    patients: dict[str, str]
    observations: list[str]

    def observations_of(self, given: str) -> list[str]:
        index = [name for name, _ in PEOPLE].index(given)
        return [oid for oid, who in zip(self.observations, SUBJECT_OF, strict=True) if who == index]


def _client(server: LiveServer, **headers: str) -> SyncFHIRClient:
    return SyncFHIRClient(server.base_url, extra_headers=headers or None, requests_config={"timeout": 60})


@pytest.fixture(scope="module")
def cohort(server: LiveServer) -> Cohort:
    """Four patients and seven observations created through fhirpy's ``save()``."""
    client = _client(server)
    family = unique("Fhirpy")
    system = f"urn:fhirpy:{family}"
    patients: dict[str, SyncFHIRResource] = {}
    for given, born in PEOPLE:
        patient = client.resource("Patient", name=[{"family": family, "given": [given]}], birthDate=born)
        patient.save()
        patients[given] = patient
    observations = []
    for day, who in enumerate(SUBJECT_OF, start=1):
        observation = client.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": system, "code": "reading"}]},
            subject=patients[PEOPLE[who][0]].to_reference(),
            effectiveDateTime=f"2020-01-0{day}",
            valueQuantity={"value": day, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"},
        )
        observation.save()
        observations.append(observation.id)
    return Cohort(family, f"{system}|reading", {g: p.id for g, p in patients.items()}, observations)


def _observations(server: LiveServer, cohort: Cohort) -> SyncFHIRSearchSet[SyncFHIRResource]:
    return _client(server).resources("Observation").search(code=cohort.code)


def _ids(resources: list[SyncFHIRResource]) -> list[str]:
    return [r.id for r in resources]


def _modes(bundle: dict) -> dict[str, list[str]]:
    """``{search mode: [Type/id, ...]}`` of a raw searchset bundle, in bundle order."""
    modes: dict[str, list[str]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        modes.setdefault(entry["search"]["mode"], []).append(f"{resource['resourceType']}/{resource['id']}")
    return modes


def test_saved_resources_read_back(server: LiveServer, cohort: Cohort) -> None:
    client = _client(server)
    found = client.resources("Patient").search(family=cohort.family).fetch_all()
    assert sorted(_ids(found)) == sorted(cohort.patients.values())
    bob = client.reference("Patient", cohort.patients["Bob"]).to_resource()
    assert bob["name"][0]["given"] == ["Bob"]
    assert bob["birthDate"] == "1980-01-01"


def test_paging_follows_next_links(server: LiveServer, cohort: Cohort) -> None:
    search = _observations(server, cohort).sort("date").limit(3)
    first = search.fetch_raw()
    assert [e["resource"]["id"] for e in first["entry"]] == cohort.observations[:3]
    relations = {link["relation"] for link in first["link"]}
    assert {"self", "next"} <= relations
    assert "previous" not in relations
    # fetch_all() iterates the pages through the server's next links: 3 + 3 + 1.
    assert _ids(search.fetch_all()) == cohort.observations


def test_paging_without_sort_returns_each_match_once(server: LiveServer, cohort: Cohort) -> None:
    every = _ids(_observations(server, cohort).limit(2).fetch_all())
    assert len(every) == len(cohort.observations)
    assert sorted(every) == sorted(cohort.observations)


def test_sort_descending_date_across_pages(server: LiveServer, cohort: Cohort) -> None:
    newest_first = list(reversed(cohort.observations))
    search = _observations(server, cohort).sort("-date")
    assert _ids(search.limit(2).fetch_all()) == newest_first
    newest = search.first()
    assert newest is not None
    assert newest.id == newest_first[0]
    youngest_first = _client(server).resources("Patient").search(family=cohort.family).sort("-birthdate")
    assert _ids(youngest_first.fetch()) == [cohort.patients[g] for g in ("Dee", "Cid", "Bob", "Ann")]


def test_include_subject_shows_in_fetch_raw_only(server: LiveServer, cohort: Cohort) -> None:
    search = _observations(server, cohort).sort("date").include("Observation", "subject")
    modes = _modes(search.fetch_raw())
    assert modes["match"] == [f"Observation/{oid}" for oid in cohort.observations]
    assert sorted(modes["include"]) == sorted(f"Patient/{cohort.patients[g]}" for g in ("Ann", "Bob", "Cid"))
    # fetch() keeps only resources of the searched type, so the included patients are dropped.
    assert _ids(search.fetch()) == cohort.observations


def test_revinclude_observations_of_the_family(server: LiveServer, cohort: Cohort) -> None:
    search = (
        _client(server)
        .resources("Patient")
        .search(family=cohort.family)
        .sort("birthdate")
        .revinclude("Observation", "subject")
    )
    modes = _modes(search.fetch_raw())
    assert modes["match"] == [f"Patient/{cohort.patients[g]}" for g, _ in PEOPLE]
    assert sorted(modes["include"]) == sorted(f"Observation/{oid}" for oid in cohort.observations)


def test_chained_parameters(server: LiveServer, cohort: Cohort) -> None:
    observations = _client(server).resources("Observation")
    by_family = observations.search(**{"subject:Patient.name": cohort.family}).sort("date")
    assert _ids(by_family.fetch_all()) == cohort.observations
    # fhirpy's own chain syntax: subject__Patient__given -> subject:Patient.given
    bobs = observations.search(subject__Patient__given="Bob", code=cohort.code).sort("date")
    assert _ids(bobs.fetch_all()) == cohort.observations_of("Bob")
    born_after = observations.search(subject__Patient__birthdate__ge="1985", code=cohort.code).sort("date")
    assert _ids(born_after.fetch_all()) == cohort.observations_of("Cid")


def test_reverse_chain_has(server: LiveServer, cohort: Cohort) -> None:
    patients = _client(server).resources("Patient").search(family=cohort.family)
    with_readings = patients.has("Observation", "subject", code=cohort.code).sort("birthdate")
    assert _ids(with_readings.fetch()) == [cohort.patients[g] for g in ("Ann", "Bob", "Cid")]


def test_count_with_lenient_handling(server: LiveServer, cohort: Cohort) -> None:
    """fhirpy's count() sends ``_count=0&_totalMethod=count``; ``handling=lenient`` lets the server drop the latter."""
    client = _client(server, Prefer="handling=lenient")
    assert client.resources("Patient").search(family=cohort.family).count() == len(PEOPLE)
    assert client.resources("Observation").search(code=cohort.code).count() == len(cohort.observations)
    assert client.resources("Observation").search(subject__Patient__given="Ann", code=cohort.code).count() == 3


def test_count_out_of_the_box_names_the_unknown_parameter(server: LiveServer, cohort: Cohort) -> None:
    """Unknown parameters are refused by default (issue 3: never silently ignored), naming the parameter."""
    with pytest.raises(OperationOutcome, match="_totalMethod"):
        _client(server).resources("Patient").search(family=cohort.family).count()
