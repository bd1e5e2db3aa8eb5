"""The oracle proof of search: what the server returns equals what an independent evaluator computes.

Real Synthea data (the seven smallest smart-on-fhir bundles, the seventh bringing the only woman, plus
the smallest fhir-data-pipes patient with the organizations, locations, practitioners and roles it refers
to) is loaded into a fresh database per backend. Every stored resource is read back, and
``tests/search/oracle.py`` evaluates each query on that JSON from the spec's own search parameter
definitions. Query values (codes, names, dates) are picked from the data at run time, and every pick
is checked to select some but not all resources, so no comparison passes by matching nothing or all.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import BACKENDS, live_server, postgres_schema
from tests.search.oracle import Oracle, Params, Result, date_span, normalize
from tests.shared_data import shared

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SMART_TAG = "https://smarthealthit.org/tags|synthea-5-2019"
SMART_BUNDLES = 7
# A query over these ~1,000 resources that runs longer fails its case (500) instead of hanging the module.
STATEMENT_TIMEOUT_MS = 10_000


# --- the data -----------------------------------------------------------------------------------------


def smart_bundles() -> list[Path]:
    """The smallest smart-on-fhir bundles (ties broken by name)."""
    folder = shared("synthea", "smart-on-fhir-r4")
    return sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_size, p.name))[:SMART_BUNDLES]


def pipes_bundles() -> list[dict[str, Any]]:
    """The smallest fhir-data-pipes patient, after the shared entries its conditional references need."""
    folder = shared("synthea", "fhir-data-pipes-r4")
    shared_files = sorted(folder.glob("hospitalInformation*.json")) + sorted(folder.glob("practitionerInformation*"))
    patient_file = min((p for p in folder.glob("*.json") if p not in shared_files), key=lambda p: p.stat().st_size)
    patient = json.loads(patient_file.read_bytes())
    wanted = conditional_references(patient)
    return [subset(json.loads(path.read_bytes()), wanted) for path in shared_files] + [patient]


def conditional_references(value: Any) -> set[str]:
    """Every ``Type?identifier=...`` reference string in a bundle."""
    if isinstance(value, dict):
        found = {value["reference"]} if "?" in str(value.get("reference", "")) else set()
        return found.union(*(conditional_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(conditional_references(v) for v in value))
    return set()


def subset(bundle: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """The entries whose conditional create is referenced, and the roles of referenced practitioners."""
    kept = [e for e in bundle["entry"] if f"{e['request']['url']}?{e['request'].get('ifNoneExist')}" in wanted]
    npis = {i["value"] for e in kept for i in e["resource"].get("identifier", ()) if "npi" in i.get("system", "")}
    kept += [
        e
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "PractitionerRole"
        and e["resource"].get("practitioner", {}).get("identifier", {}).get("value") in npis
    ]
    return {**bundle, "entry": kept}


def load(client: httpx.Client) -> list[dict[str, Any]]:
    """Post every bundle, then read back each created resource by its location."""
    bundles = [json.loads(p.read_bytes()) for p in smart_bundles()] + pipes_bundles()
    locations = []
    for bundle in bundles:
        response = client.post("", json=bundle)
        assert response.status_code == 200, response.text[:500]
        for entry in response.json()["entry"]:
            assert entry["response"]["status"][:3] in {"200", "201"}, entry["response"]
            locations.append(entry["response"]["location"].split("/_history")[0])
    return [json.loads(client.get(location).content, parse_float=Decimal) for location in dict.fromkeys(locations)]


@dataclass
class Loaded:
    client: httpx.Client
    oracle: Oracle

    @cached_property
    def picks(self) -> Picks:
        return Picks(self.oracle)


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """A server on a fresh database of each backend, loaded, and the oracle over what it stored."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('oracle') / 'fhir.db'}"
        else:
            url = with_statement_timeout(stack.enter_context(postgres_schema()))
        server = stack.enter_context(live_server(url))
        client = stack.enter_context(httpx.Client(base_url=server.base_url + "/", timeout=30))
        resources = load(client)
        yield Loaded(client, Oracle(resources, shared("fhir-r4"), server.base_url))


def with_statement_timeout(url: str) -> str:
    """The schema's URL (which ends in libpq ``options``) with a statement timeout added to them."""
    assert "options=" in url.rsplit("&", 1)[-1].rsplit("?", 1)[-1], url
    return f"{url}%20-cstatement_timeout%3D{STATEMENT_TIMEOUT_MS}"


# --- values picked from the data ----------------------------------------------------------------------


class Picks:
    """Query values chosen deterministically from the stored content, so nothing is hard-coded."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.resources = oracle.resources

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [self.resources[k] for k in self.oracle.of_type(resource_type)]

    # patients

    @cached_property
    def patients(self) -> list[dict[str, Any]]:
        """Patients by official family then given name."""
        return sorted(self.of_type("Patient"), key=lambda p: (family(p), p["name"][0]["given"][0]))

    @cached_property
    def accented(self) -> dict[str, Any]:
        """The first patient whose family name has an accent (Synthea has Spanish names)."""
        return next((p for p in self.patients if has_accent(family(p))), self.patients[0])

    @cached_property
    def woman(self) -> dict[str, Any]:
        return next(p for p in self.patients if p["gender"] == "female")

    @cached_property
    def busiest(self) -> dict[str, Any]:
        """The patient with the most observations."""
        counts = Counter(o["subject"]["reference"] for o in self.of_type("Observation"))
        return max(self.patients, key=lambda p: (counts[f"Patient/{p['id']}"], family(p)))

    def ref(self, patient: dict[str, Any]) -> str:
        return f"Patient/{patient['id']}"

    @cached_property
    def given_with_accent(self) -> str:
        givens = [g for p in self.patients for n in p["name"] for g in n.get("given", ())]
        return next((g for g in givens if has_accent(g)), givens[0])

    @cached_property
    def city(self) -> str:
        return str(self.patients[0]["address"][0]["city"])

    @cached_property
    def median_birth_year(self) -> str:
        return str(statistics.median_low(int(p["birthDate"][:4]) for p in self.patients))

    @cached_property
    def shared_name(self) -> str:
        """A three-letter prefix of a name part that some Patient and some Practitioner share."""
        prefixes = [
            {normalize(part)[:3] for r in self.of_type(t) for n in r["name"] for part in name_parts(n)}
            for t in ("Patient", "Practitioner")
        ]
        return sorted(prefixes[0] & prefixes[1])[0]

    # observations

    @cached_property
    def loinc_counts(self) -> Counter[str]:
        return Counter(
            c["code"]
            for o in self.of_type("Observation")
            for c in o["code"].get("coding", ())
            if c.get("system") == LOINC
        )

    @cached_property
    def common_code(self) -> str:
        """The most common LOINC code of observations."""
        return min(self.loinc_counts, key=lambda c: (-self.loinc_counts[c], c))

    @cached_property
    def second_code(self) -> str:
        return sorted(self.loinc_counts, key=lambda c: (-self.loinc_counts[c], c))[1]

    @cached_property
    def partial_code(self) -> str:
        """A LOINC code whose observations belong to about half the patients (then the most common)."""
        holders: dict[str, set[str]] = {}
        for o in self.of_type("Observation"):
            for c in o["code"].get("coding", ()):
                holders.setdefault(c["code"], set()).add(o["subject"]["reference"])
        half = len(self.patients) / 2
        return min(self.loinc_counts, key=lambda c: (abs(len(holders[c]) - half), -self.loinc_counts[c], c))

    @cached_property
    def code_word(self) -> str:
        """The first word of the most common observation code's text."""
        text = next(o["code"]["text"] for o in self.of_type("Observation") if code_of(o) == self.common_code)
        return str(text.split()[0])

    @cached_property
    def quantity(self) -> tuple[str, str, Decimal]:
        """The most common (LOINC code, UCUM unit) of value quantities and its median value."""
        values: dict[tuple[str, str], list[Decimal]] = {}
        for o in self.of_type("Observation"):
            q = o.get("valueQuantity")
            if q and q.get("system") == UCUM and "code" in q:
                values.setdefault((code_of(o), q["code"]), []).append(q["value"])
        (code, unit), found = max(values.items(), key=lambda item: (len(item[1]), item[0]))
        return code, unit, statistics.median_low(found)

    def component_median(self, code: str) -> Decimal:
        found = [
            c["valueQuantity"]["value"]
            for o in self.of_type("Observation")
            for c in o.get("component", ())
            if c["code"]["coding"][0]["code"] == code and "valueQuantity" in c
        ]
        return Decimal(str(statistics.median_low(found))).quantize(Decimal(1))

    @cached_property
    def observations_by_date(self) -> list[dict[str, Any]]:
        return sorted(self.of_type("Observation"), key=lambda o: (o["effectiveDateTime"], o["id"]))

    @cached_property
    def median_observation_time(self) -> str:
        return str(self.observations_by_date[len(self.observations_by_date) // 2]["effectiveDateTime"])

    @cached_property
    def busiest_encounter(self) -> str:
        counts = Counter(o["encounter"]["reference"] for o in self.of_type("Observation") if "encounter" in o)
        return min(counts, key=lambda e: (-counts[e], self.resources[e]["period"]["start"]))

    @cached_property
    def provider_word(self) -> str:
        """The first word of the organization that provides the busiest encounter."""
        org = self.resources[self.resources[self.busiest_encounter]["serviceProvider"]["reference"]]
        return str(org["name"].split()[0])

    @cached_property
    def median_encounter_day(self) -> str:
        starts = sorted(e["period"]["start"] for e in self.of_type("Encounter"))
        return str(starts[len(starts) // 2][:10])

    @cached_property
    def longest_stay(self) -> dict[str, str]:
        """The period of the longest encounter (one that spans several days)."""
        periods = [e["period"] for e in self.of_type("Encounter") if "end" in e["period"]]
        return max(periods, key=lambda p: (date_span(p["end"]).high - date_span(p["start"]).low, p["start"]))

    @cached_property
    def middle_last_updated(self) -> str:
        stamps = sorted(r["meta"]["lastUpdated"] for r in self.of_type("Observation"))
        return str(stamps[len(stamps) // 2])

    @cached_property
    def patient_identifier(self) -> str:
        ident = self.busiest["identifier"][1]
        return f"{ident['system']}|{ident['value']}"

    @cached_property
    def location_org_identifier(self) -> str:
        ident = next(
            loc["managingOrganization"]["identifier"]
            for loc in self.of_type("Location")
            if "identifier" in loc.get("managingOrganization", {})
        )
        return f"{ident['system']}|{ident['value']}"

    @cached_property
    def role_practitioner_identifier(self) -> str:
        ident = next(
            r["practitioner"]["identifier"]
            for r in self.of_type("PractitionerRole")
            if "identifier" in r.get("practitioner", {})
        )
        return f"{ident['system']}|{ident['value']}"

    def observation_ids(self, count: int) -> str:
        return ",".join(o["id"] for o in self.observations_by_date[:: len(self.observations_by_date) // count][:count])


def family(patient: dict[str, Any]) -> str:
    return str(patient["name"][0]["family"])


def name_parts(name: dict[str, Any]) -> list[str]:
    return [name.get("family", ""), *name.get("given", ())]


def has_accent(text: str) -> bool:
    return normalize(text) != text.casefold()


def code_of(observation: dict[str, Any]) -> str:
    return str(observation["code"]["coding"][0]["code"])


def shifted(date_time: str, hours: int) -> str:
    """The same instant written with another UTC offset."""
    return datetime.fromisoformat(date_time).astimezone(timezone(timedelta(hours=hours))).isoformat()


# --- the cases ----------------------------------------------------------------------------------------

Build = Callable[[Picks], tuple[str, Params]]


@dataclass(frozen=True)
class Case:
    """One query: its path and parameters built from the picks, and what a non-trivial result means."""

    id: str
    build: Build
    may_be_empty: bool = False
    may_be_all: bool = False
    approximate: bool = False


def case(
    id: str, path: str | Callable[[Picks], str], *params: tuple[str, Callable[[Picks], str] | str], **flags: bool
) -> Case:
    """A case whose path and values may be constants or functions of the picks."""

    def build(p: Picks) -> tuple[str, Params]:
        built = [(k, v(p) if callable(v) else v) for k, v in params]
        return (path(p) if callable(path) else path), built

    return Case(id, build, **flags)


def prefixed(prefix: str, pick: Callable[[Picks], str]) -> Callable[[Picks], str]:
    return lambda p: prefix + pick(p)


def observation_day(p: Picks) -> str:
    return p.median_observation_time[:10]


def encounter_day(p: Picks) -> str:
    return p.median_encounter_day


def date_cases() -> list[Case]:
    """Every prefix on a day, against dateTimes (Observation) and Periods (Encounter), then the rest."""
    prefixes = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
    cases = [
        case(f"observation-date-{x}-day", "Observation", ("date", prefixed(x, observation_day)), approximate=x == "ap")
        for x in prefixes
    ]
    cases += [
        case(f"encounter-period-{x}-day", "Encounter", ("date", prefixed(x, encounter_day)), approximate=x == "ap")
        for x in prefixes
    ]
    return [
        *cases,
        case(
            "encounter-period-ge-last-day-of-stay", "Encounter", ("date", lambda p: "ge" + p.longest_stay["end"][:10])
        ),
        case(
            "encounter-period-le-first-day-of-stay",
            "Encounter",
            ("date", lambda p: "le" + p.longest_stay["start"][:10]),
        ),
        case("encounter-period-eq-month-of-stay", "Encounter", ("date", lambda p: p.longest_stay["start"][:7])),
        case("observation-date-year", "Observation", ("date", lambda p: p.median_observation_time[:4])),
        case("observation-date-month", "Observation", ("date", lambda p: p.median_observation_time[:7])),
        case("observation-date-second", "Observation", ("date", lambda p: p.median_observation_time)),
        case(
            "observation-date-gt-second", "Observation", ("date", prefixed("gt", lambda p: p.median_observation_time))
        ),
        case(
            "observation-date-ge-instant-ms",
            "Observation",
            ("date", lambda p: "ge" + p.median_observation_time[:19] + ".000Z"),
        ),
        case(
            "observation-date-le-instant-ms",
            "Observation",
            ("date", lambda p: "le" + p.median_observation_time[:19] + ".000Z"),
        ),
        case(
            "observation-date-lt-offset",
            "Observation",
            ("date", lambda p: "lt" + shifted(p.median_observation_time, -5)),
        ),
        case(
            "observation-date-range-and",
            "Observation",
            ("date", lambda p: "ge" + p.median_observation_time[:4]),
            ("date", lambda p: "lt" + str(int(p.median_observation_time[:4]) + 2)),
        ),
        case("patient-birthdate-year", "Patient", ("birthdate", lambda p: p.median_birth_year)),
        case("patient-birthdate-ne", "Patient", ("birthdate", lambda p: "ne" + p.median_birth_year)),
        case("patient-birthdate-lt-month", "Patient", ("birthdate", lambda p: "lt" + p.median_birth_year + "-07")),
        case("patient-birthdate-ap", "Patient", ("birthdate", lambda p: "ap" + p.median_birth_year), approximate=True),
        case("patient-death-date-missing-false", "Patient", ("death-date:missing", "false")),
        case("patient-death-date-lt", "Patient", ("death-date", "lt2010")),
        case("last-updated-le-future", "Observation", ("_lastUpdated", "le2999-01-01"), may_be_all=True),
        case("last-updated-gt-middle", "Observation", ("_lastUpdated", lambda p: "gt" + p.middle_last_updated)),
        case("last-updated-le-middle", "Observation", ("_lastUpdated", lambda p: "le" + p.middle_last_updated)),
    ]


def loinc(pick: Callable[[Picks], str]) -> Callable[[Picks], str]:
    return lambda p: f"{LOINC}|{pick(p)}"


def common(p: Picks) -> str:
    return p.common_code


CASES: list[Case] = [
    # string
    case("family-prefix-case-accent", "Patient", ("family", lambda p: normalize(family(p.accented))[:5].upper())),
    case("family-or", "Patient", ("family", lambda p: f"{family(p.patients[0])},{family(p.patients[-1])}")),
    case("name-exact", "Patient", ("name:exact", lambda p: p.given_with_accent)),
    case(
        "name-exact-other-case", "Patient", ("name:exact", lambda p: normalize(p.given_with_accent)), may_be_empty=True
    ),
    case("name-contains", "Patient", ("name:contains", lambda p: family(p.patients[0])[2:5].lower())),
    case("address-city", "Patient", ("address-city", lambda p: p.city[:4].lower())),
    case("organization-name", "Organization", ("name", lambda p: p.provider_word.lower())),
    # token
    case("code-system-and-code", "Observation", ("code", loinc(common))),
    case("code-any-system", "Observation", ("code", common)),
    case("code-or", "Observation", ("code", lambda p: f"{LOINC}|{p.common_code},{LOINC}|{p.second_code}")),
    case("code-system-only", "Condition", ("code", "http://snomed.info/sct|"), may_be_all=True),
    case("gender", "Patient", ("gender", "female")),
    case("clinical-status", "Condition", ("clinical-status", "active")),
    case("category", "Observation", ("category", "vital-signs")),
    case("code-text", "Observation", ("code:text", lambda p: p.code_word.lower())),
    case("code-not", "Observation", ("code:not", loinc(common))),
    case("category-not", "Observation", ("category:not", "vital-signs")),
    case("identifier", "Patient", ("identifier", lambda p: p.patient_identifier)),
    case("tag", "Observation", ("_tag", SMART_TAG)),
    case("active-missing", "Patient", ("active:missing", "true"), may_be_all=True),
    case("value-quantity-missing", "Observation", ("value-quantity:missing", "true")),
    case("id", "Patient", ("_id", lambda p: p.busiest["id"])),
    case("id-several", "Observation", ("_id", lambda p: p.observation_ids(3))),
    # date
    *date_cases(),
    # quantity
    case("value-quantity-gt", "Observation", ("value-quantity", "gt100")),
    case(
        "value-quantity-eq-ucum",
        "Observation",
        ("value-quantity", lambda p: f"{p.quantity[2]:.1f}|{UCUM}|{p.quantity[1]}"),
    ),
    case(
        "value-quantity-eq-unit", "Observation", ("value-quantity", lambda p: f"{p.quantity[2]:.1f}||{p.quantity[1]}")
    ),
    case(
        "value-quantity-ap",
        "Observation",
        ("value-quantity", lambda p: f"ap{p.quantity[2]:.1f}|{UCUM}|{p.quantity[1]}"),
        approximate=True,
    ),
    case(
        "value-quantity-le",
        "Observation",
        ("value-quantity", lambda p: f"le{p.quantity[2]:.1f}|{UCUM}|{p.quantity[1]}"),
    ),
    # reference
    case("subject-type-id", "Observation", ("subject", lambda p: p.ref(p.busiest))),
    case("subject-absolute", "Observation", ("subject", lambda p: f"{p.oracle.base_url}/{p.ref(p.busiest)}")),
    case("subject-id", "Observation", ("subject", lambda p: p.busiest["id"])),
    case("patient-id", "Observation", ("patient", lambda p: p.busiest["id"])),
    case("subject-type-modifier", "Observation", ("subject:Patient", lambda p: p.busiest["id"])),
    case("encounter", "Observation", ("encounter", lambda p: p.busiest_encounter)),
    case(
        "subject-identifier-literal-refs",
        "Observation",
        ("subject:identifier", lambda p: p.patient_identifier),
        may_be_empty=True,
    ),
    case(
        "location-organization-identifier", "Location", ("organization:identifier", lambda p: p.location_org_identifier)
    ),
    case(
        "role-practitioner-identifier",
        "PractitionerRole",
        ("practitioner:identifier", lambda p: p.role_practitioner_identifier),
    ),
    # AND / OR
    case("and-gender-birthdate", "Patient", ("gender", "male"), ("birthdate", lambda p: "lt" + p.median_birth_year)),
    case(
        "and-code-date",
        "Observation",
        ("code", loinc(common)),
        ("date", lambda p: "ge" + p.median_observation_time[:4]),
    ),
    # composite
    case(
        "code-value-quantity",
        "Observation",
        ("code-value-quantity", lambda p: f"{LOINC}|{p.quantity[0]}$gt{p.quantity[2]}"),
    ),
    case(
        "component-code-value-quantity",
        "Observation",
        ("component-code-value-quantity", lambda p: f"{LOINC}|8462-4$gt{p.component_median('8462-4')}"),
    ),
    # chains
    case("chain-subject-patient-name", "Observation", ("subject:Patient.name", lambda p: family(p.accented))),
    case("chain-patient-gender", "Observation", ("patient.gender", "female")),
    case("chain-two-levels", "Observation", ("encounter.service-provider.name", lambda p: p.provider_word)),
    # reverse chains
    case("has", "Patient", ("_has:Observation:patient:code", lambda p: p.partial_code)),
    case("has-nested", "Patient", ("_has:Encounter:patient:_has:Observation:encounter:code", lambda p: p.partial_code)),
    case("has-encounter", "Encounter", ("_has:Observation:encounter:code", lambda p: p.partial_code)),
    # includes
    case("include-subject", "Observation", ("code", loinc(common)), ("_include", "Observation:subject")),
    case("include-encounter", "Observation", ("code", loinc(common)), ("_include", "Observation:encounter")),
    case("revinclude-subject", "Patient", ("gender", "female"), ("_revinclude", "Observation:subject")),
    case(
        "include-iterate",
        "MedicationRequest",
        ("_include", "MedicationRequest:encounter"),
        ("_include:iterate", "Encounter:service-provider"),
        may_be_all=True,
    ),
    case("include-type-wildcard", "Observation", ("patient", lambda p: p.busiest["id"]), ("_include", "Observation:*")),
    case("include-wildcard", "Observation", ("patient", lambda p: p.busiest["id"]), ("_include", "*")),
    # sort
    case("sort-date-descending", "Observation", ("patient", lambda p: p.busiest["id"]), ("_sort", "-date")),
    case("sort-date", "Observation", ("patient", lambda p: p.busiest["id"]), ("_sort", "date")),
    case("sort-family-birthdate", "Patient", ("_sort", "family,-birthdate"), may_be_all=True),
    case("sort-encounter-period", "Encounter", ("patient", lambda p: p.busiest["id"]), ("_sort", "-date")),
    # _filter
    case("filter-and", "Patient", ("_filter", lambda p: f'family eq "{family(p.woman)}" and gender eq female')),
    case(
        "filter-or",
        "Observation",
        ("_filter", lambda p: f"code eq {LOINC}|{p.common_code} or code eq {LOINC}|{p.second_code}"),
    ),
    case("filter-date", "Patient", ("_filter", lambda p: f"birthdate lt {p.median_birth_year}-01-01")),
    # system level and compartment
    case("system-type-name", "", ("_type", "Patient,Practitioner"), ("name", lambda p: p.shared_name)),
    case("compartment", lambda p: f"{p.ref(p.busiest)}/Observation", ("code", loinc(common))),
]


# --- fetching and comparing ---------------------------------------------------------------------------


@dataclass
class Fetched:
    """Everything a search returned over all its pages."""

    matches: list[str] = field(default_factory=list)
    includes: set[str] = field(default_factory=set)
    pages: list[dict[str, Any]] = field(default_factory=list)


def entry_key(entry: dict[str, Any]) -> str:
    return f"{entry['resource']['resourceType']}/{entry['resource']['id']}"


def fetch(client: httpx.Client, path: str, params: Params) -> Fetched:
    """GET the search and follow every ``next`` link."""
    fetched = Fetched()
    response = client.get(path, params=tuple(params))
    while True:
        assert response.status_code == 200, f"GET {response.request.url}: {response.status_code} {response.text[:600]}"
        page = response.json()
        fetched.pages.append(page)
        for entry in page.get("entry", ()):
            mode = entry.get("search", {}).get("mode")
            if mode == "match":
                fetched.matches.append(entry_key(entry))
            elif mode == "include":
                fetched.includes.add(entry_key(entry))
        following = link(page, "next")
        if following is None:
            return fetched
        response = client.get(following)


def link(page: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in page.get("link", ()) if x["relation"] in {relation, relation[:4]}), None)


def described(path: str, params: Params) -> str:
    return f"GET {path}?" + "&".join(f"{k}={quote(v, safe='|:/,$')}" for k, v in params)


def difference(what: str, query: str, expected: set[str], got: set[str]) -> str:
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    return (
        f"{query}: {what} differ (expected {len(expected)}, got {len(got)})\n"
        f"  missing ({len(missing)}): {missing[:5]}\n  unexpected ({len(unexpected)}): {unexpected[:5]}"
    )


def searched_types(oracle: Oracle, path: str, params: Params) -> list[str]:
    types = dict(params).get("_type")
    return types.split(",") if types else [path.split("/")[-1]]


def assert_non_trivial(
    oracle: Oracle, c: Case, query: str, path: str, params: Params, low: Result, high: Result
) -> None:
    """A comparison must be able to fail: some resources match, and (usually) not all of them."""
    everything = sum(len(oracle.of_type(t)) for t in searched_types(oracle, path, params))
    if not c.may_be_empty:
        assert low.matches, f"{query}: the oracle expects no match; pick another value"
    if not c.may_be_all:
        assert len(high.matches) < everything, f"{query}: the oracle expects every resource; pick another value"


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_search_matches_oracle(loaded: Loaded, c: Case) -> None:
    path, params = c.build(loaded.picks)
    query = described(path, params)
    exact = loaded.oracle.search(path, params)
    low = loaded.oracle.with_approximation(Decimal(0)).search(path, params) if c.approximate else exact
    assert_non_trivial(loaded.oracle, c, query, path, params, low, exact)
    got = fetch(loaded.client, path, [*params, ("_count", "1000")])
    assert len(got.matches) == len(set(got.matches)), f"{query}: a resource is returned twice"
    if c.approximate:
        assert set(low.matches) <= set(got.matches), difference(
            "matches (ap at 0%)", query, set(low.matches), set(got.matches)
        )
        assert set(got.matches) <= set(exact.matches), difference(
            "matches (ap at 10%)", query, set(exact.matches), set(got.matches)
        )
    else:
        assert set(got.matches) == set(exact.matches), difference(
            "matches", query, set(exact.matches), set(got.matches)
        )
    total = got.pages[0].get("total")
    assert total in (None, len(got.matches)), f"{query}: Bundle.total is {total} for {len(got.matches)} matches"
    if any(k.startswith("_include") or k.startswith("_revinclude") for k, _ in params):
        assert exact.includes, f"{query}: the oracle expects nothing included; pick another value"
        assert got.includes == exact.includes, difference("includes", query, exact.includes, got.includes)
    sort = dict(params).get("_sort")
    if sort:
        keys = sort.split(",")
        got_keys = [loaded.oracle.sort_key(k, keys) for k in got.matches]
        expected_keys = [loaded.oracle.sort_key(k, keys) for k in exact.matches]
        first = next((i for i, (a, b) in enumerate(zip(got_keys, expected_keys, strict=True)) if a != b), None)
        assert first is None, (
            f"{query}: order differs at position {first}: got {got.matches[first]} with key {got_keys[first]}, "
            f"expected key {expected_keys[first]}"
        )


def test_paging_next_and_previous_links(loaded: Loaded) -> None:
    """_count=7: following ``next`` visits every match once; ``previous`` walks the same pages back."""
    path, params = "Observation", [("code", f"{LOINC}|{loaded.picks.common_code}")]
    expected = loaded.oracle.search(path, params)
    assert len(expected.matches) > 14, "pick a code with at least three pages"
    got = fetch(loaded.client, path, [*params, ("_count", "7")])
    pages = [[entry_key(e) for e in page.get("entry", ())] for page in got.pages]
    assert all(len(p) == 7 for p in pages[:-1]) and 0 < len(pages[-1]) <= 7, [len(p) for p in pages]
    assert len(got.matches) == len(set(got.matches)), "pages overlap"
    assert set(got.matches) == set(expected.matches), difference(
        "paged matches", "paging", set(expected.matches), set(got.matches)
    )
    back = [pages[-1]]
    url = link(got.pages[-1], "previous")
    while url is not None:
        response = loaded.client.get(url)
        assert response.status_code == 200, response.text[:500]
        back.append([entry_key(e) for e in response.json().get("entry", ())])
        url = link(response.json(), "previous")
    assert back[::-1] == pages, "following previous links from the last page does not give the same pages"
