"""Basic search: string, token, date, reference, _id, _lastUpdated, AND/OR, _count with next links."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import unique


@pytest.fixture
def family(client: httpx.Client) -> str:
    """Three patients sharing a unique family name, with distinct given names, genders and birth dates."""
    name = unique("Fam")
    org = client.post("Organization", json={"resourceType": "Organization", "name": name}).json()
    people = [("Ann", "female", "1970-03-04"), ("Bob", "male", "1985-06-07"), ("Ãnna", "female", "2001-01-01")]
    for given, gender, born in people:
        client.post(
            "Patient",
            json={
                "resourceType": "Patient",
                "name": [{"family": name, "given": [given]}],
                "gender": gender,
                "birthDate": born,
                "managingOrganization": {"reference": f"Organization/{org['id']}"},
                "identifier": [{"system": "urn:fam", "value": f"{name}-{given}"}],
            },
        )
    return name


def given_names(bundle: dict) -> list[str]:
    return sorted(
        e["resource"]["name"][0]["given"][0] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"
    )


def test_string_prefix_case_and_accent_insensitive(client: httpx.Client, family: str) -> None:
    assert given_names(client.get(f"Patient?family={family}&given=ann").json()) == ["Ann", "Ãnna"]
    assert given_names(client.get(f"Patient?family={family.lower()}").json()) == ["Ann", "Bob", "Ãnna"]
    assert given_names(client.get(f"Patient?family={family}&given:exact=Ann").json()) == ["Ann"]


def test_token_and_or(client: httpx.Client, family: str) -> None:
    assert given_names(client.get(f"Patient?family={family}&gender=male").json()) == ["Bob"]
    both = client.get(f"Patient?family={family}&gender=male,female").json()
    assert given_names(both) == ["Ann", "Bob", "Ãnna"]
    ident = client.get(f"Patient?identifier=urn:fam|{family}-Bob").json()
    assert given_names(ident) == ["Bob"]
    assert client.get(f"Patient?identifier=urn:other|{family}-Bob").json()["total"] == 0


def test_date_prefixes(client: httpx.Client, family: str) -> None:
    assert given_names(client.get(f"Patient?family={family}&birthdate=1985").json()) == ["Bob"]
    assert given_names(client.get(f"Patient?family={family}&birthdate=ge1985-01-01").json()) == ["Bob", "Ãnna"]
    assert given_names(client.get(f"Patient?family={family}&birthdate=lt1985").json()) == ["Ann"]
    between = client.get(f"Patient?family={family}&birthdate=gt1971&birthdate=lt2000").json()
    assert given_names(between) == ["Bob"]
    assert client.get("Patient?birthdate=1985-13").status_code == 400


def test_reference(client: httpx.Client, family: str) -> None:
    org_id = client.get(f"Organization?name={family}").json()["entry"][0]["resource"]["id"]
    assert given_names(client.get(f"Patient?organization=Organization/{org_id}").json()) == ["Ann", "Bob", "Ãnna"]
    assert given_names(client.get(f"Patient?organization={org_id}&gender=male").json()) == ["Bob"]


def test_id_and_last_updated(client: httpx.Client, family: str) -> None:
    bundle = client.get(f"Patient?family={family}").json()
    ids = [e["resource"]["id"] for e in bundle["entry"]]
    assert {e["resource"]["id"] for e in client.get(f"Patient?_id={ids[0]},{ids[1]}").json()["entry"]} == set(ids[:2])
    first_update = bundle["entry"][0]["resource"]["meta"]["lastUpdated"]
    since = client.get("Patient", params={"family": family, "_lastUpdated": f"ge{first_update}"}).json()
    assert len(since["entry"]) == 3
    assert client.get(f"Patient?family={family}&_lastUpdated=lt2000-01-01").json()["total"] == 0
    assert client.get("Patient?_lastUpdated=2020-99").status_code == 400


def test_paging_with_next_links(client: httpx.Client, family: str) -> None:
    page = client.get(f"Patient?family={family}&_count=2").json()
    assert len(page["entry"]) == 2
    self_link = next(link["url"] for link in page["link"] if link["relation"] == "self")
    assert f"family={family}" in self_link and "_count=2" in self_link
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = httpx.get(next_url).json()
    assert len(rest["entry"]) == 1
    assert not [link for link in rest["link"] if link["relation"] == "next"]
    names = given_names(page) + given_names(rest)
    assert sorted(names) == ["Ann", "Bob", "Ãnna"]


def test_post_search_form(client: httpx.Client, family: str) -> None:
    response = client.post("Patient/_search", data={"family": family, "gender": "female"})
    assert given_names(response.json()) == ["Ann", "Ãnna"]


def test_summary_count(client: httpx.Client, family: str) -> None:
    counted = client.get(f"Patient?family={family}&_summary=count").json()
    assert counted["total"] == 3 and counted["entry"] == []


def test_missing_modifier(client: httpx.Client, family: str) -> None:
    client.post("Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    assert client.get(f"Patient?family={family}&birthdate:missing=true").json()["total"] == 1
    assert client.get(f"Patient?family={family}&birthdate:missing=false").json()["total"] == 3


def test_system_search_by_id(client: httpx.Client, family: str) -> None:
    org_id = client.get(f"Organization?name={family}").json()["entry"][0]["resource"]["id"]
    found = client.get(f"?_id={org_id}").json()
    assert [e["resource"]["resourceType"] for e in found["entry"]] == ["Organization"]


def test_summary_and_elements_on_search(client: httpx.Client, family: str) -> None:
    bundle = client.get(f"Patient?family={family}&_elements=gender").json()
    assert all(set(e["resource"]) <= {"resourceType", "id", "meta", "gender"} for e in bundle["entry"])
    as_xml = client.get(f"Patient?family={family}&_format=xml")
    assert as_xml.headers["content-type"].startswith("application/fhir+xml")
    assert b"<Bundle" in as_xml.content and b"<Patient" in as_xml.content
