"""CARIN Blue Button (C4BB 2.1) search on ExplanationOfBenefit, and the R4 financial searches, over HTTP.

A C4BB server SHALL answer these ExplanationOfBenefit searches and includes (CapabilityStatement ``c4bb``
of http://hl7.org/fhir/us/carin-bb): ``_id``, ``patient``, ``_lastUpdated``, ``type``, ``identifier``,
``service-date``, ``service-start-date``, ``billable-period-start``; ``_include`` of ``patient``,
``provider``, ``care-team``, ``coverage`` and ``insurer``. R4 defines most of them; ``type``, the three
dates and ``insurer`` come from the guide's SearchParameters in ``resources/ig/``.

Two corpora, each loaded by transaction on both backends:

- ``fixture``: written here, so a fresh clone tests the behaviour: four EOBs covering every shape the
  guide's parameters read (billablePeriod only; item.servicedDate only; both servicedPeriod and
  servicedDate items; an open service period), with real Coverage, insurer, Claim and ClaimResponse;
- ``synthea``: the smallest smart-on-fhir bundles of ``../shared`` (skipped outside CI when absent), cut
  to their ExplanationOfBenefit, Claim, Coverage, Patient, Practitioner and Organization entries plus
  whatever those refer to (a transaction must resolve every ``urn:uuid:``). Synthea EOBs keep their
  Coverage contained and name the insurer by display only: nothing to include there, which is right.

Expected results are computed here from the JSON that was sent, with each parameter's paths written out
below (not the registry, not the server's extractor); dates, prefixes and tokens are compared with the
helpers of ``tests/search/oracle.py``. Every load carries its own ``meta.tag`` and every search is
restricted to it, so what other tests store on the shared server cannot leak in.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from resources import generate_registry
from resources.ig import search_parameter_bundles
from resources.registry import ElementPath, search_param
from tests.conftest import LiveServer, unique
from tests.search.oracle import compare, date_span, date_spans, split_escaped, split_prefix, token_matches
from tests.shared_data import shared

Resource = dict[str, Any]
Params = list[tuple[str, str]]

C4BB = "http://hl7.org/fhir/us/carin-bb/SearchParameter/"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
TAG_SYSTEM = "https://github.com/fhir-server/tests/carin-bb"
SYNTHEA_BUNDLES = 4
LOADED_TYPES = frozenset({"ExplanationOfBenefit", "Claim", "Coverage", "Patient", "Practitioner", "Organization"})
DATE_PREFIXES = ("eq", "gt", "ge", "lt", "le", "sa", "eb")


# --- how this test reads each parameter -------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A search parameter as this test reads it: its kind and the JSON paths of its values."""

    kind: str
    paths: tuple[tuple[str, ...], ...]

    def values(self, resource: Resource) -> list[Any]:
        return [value for path in self.paths for value in walk(resource, path)]

    def matches(self, resource: Resource, query: str) -> bool:
        """Whether a resource matches ``param=query`` (comma-separated alternatives OR'd)."""
        values = self.values(resource)
        return any(value_matches(self.kind, v, q) for q in split_escaped(query, ",") for v in values)


def walk(value: Any, path: tuple[str, ...]) -> list[Any]:
    """The values at a JSON path, arrays flattened at every step."""
    found = [value]
    for key in path:
        children = [item.get(key) for item in found if isinstance(item, dict)]
        found = [c for child in children for c in (child if isinstance(child, list) else [child]) if c is not None]
    return found


def value_matches(kind: str, value: Any, query: str) -> bool:
    if kind == "reference":
        reference = value.get("reference") if isinstance(value, dict) else None
        return reference is not None and query in (reference, reference.split("/")[-1])
    if kind == "token":
        return token_matches(value, None, query)
    prefix, text = split_prefix(query)
    return any(compare(prefix, date_span(text), span) for span in date_spans(value))


def ref(*path: str) -> Rule:
    return Rule("reference", (path,))


def token(*path: str) -> Rule:
    return Rule("token", (path,))


# C4BB 2.1 ExplanationOfBenefit parameters: the core R4 ones it relies on, and the guide's own.
EOB = {
    "patient": ref("patient"),
    "provider": ref("provider"),
    "care-team": ref("careTeam", "provider"),
    "coverage": ref("insurance", "coverage"),
    "insurer": ref("insurer"),
    "identifier": token("identifier"),
    "type": token("type"),
    "billable-period-start": Rule("date", (("billablePeriod", "start"),)),
    "service-start-date": Rule(
        "date", (("billablePeriod", "start"), ("item", "servicedDate"), ("item", "servicedPeriod", "start"))
    ),
    "service-date": Rule("date", (("billablePeriod",), ("item", "servicedDate"), ("item", "servicedPeriod"))),
}
EOB_INCLUDES = ("patient", "provider", "care-team", "coverage", "insurer")

# Representative R4 parameters of the other financial resources.
FINANCIAL = {
    "Coverage": {
        "patient": ref("beneficiary"),
        "beneficiary": ref("beneficiary"),
        "payor": ref("payor"),
        "status": token("status"),
    },
    "Claim": {
        "patient": ref("patient"),
        "insurer": ref("insurer"),
        "status": token("status"),
        "created": Rule("date", (("created",),)),
    },
    "ClaimResponse": {
        "patient": ref("patient"),
        "request": ref("request"),
        "status": token("status"),
        "created": Rule("date", (("created",),)),
    },
}


# --- the corpora ----------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """What one test load stored: resources by ``Type/id`` (references rewritten as the server must)."""

    kind: str
    tag: str
    resources: dict[str, Resource] = field(default_factory=dict)
    last_updated: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # fullUrl -> Type/id

    def of_type(self, resource_type: str) -> list[str]:
        return [key for key in self.resources if key.startswith(resource_type + "/")]

    def values(self, resource_type: str, rule: Rule) -> list[Any]:
        """The values of a parameter over all resources of a type."""
        return [value for key in self.of_type(resource_type) for value in rule.values(self.resources[key])]

    def expected(self, resource_type: str, criteria: list[tuple[Rule, str]]) -> set[str]:
        """The resources of a type that satisfy every (rule, query) criterion."""
        return {
            key
            for key in self.of_type(resource_type)
            if all(rule.matches(self.resources[key], query) for rule, query in criteria)
        }

    def targets(self, keys: set[str], rule: Rule) -> set[str]:
        """The corpus resources the given resources point at through a reference rule."""
        found = {v.get("reference") for key in keys for v in rule.values(self.resources[key]) if isinstance(v, dict)}
        return {target for target in found if target in self.resources}

    def transaction(self, client: httpx.Client, entries: list[dict[str, Any]]) -> None:
        """POST the entries as a transaction (tagged, references to earlier loads already rewritten)."""
        entries = copy.deepcopy(entries)
        for entry in entries:
            rewrite_references(entry["resource"], self.ids)
            entry["resource"].setdefault("meta", {}).setdefault("tag", []).append(
                {"system": TAG_SYSTEM, "code": self.tag.split("|")[1]}
            )
        response = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert response.status_code == 200, response.text[:2000]
        answers = response.json()["entry"]
        for entry, answer in zip(entries, answers, strict=True):
            assert answer["response"]["status"].startswith("201"), answer
            location = answer["response"]["location"].split("/_history/")[0].split("/")
            self.ids[entry["fullUrl"]] = f"{location[-2]}/{location[-1]}"
        for entry, answer in zip(entries, answers, strict=True):
            key = self.ids[entry["fullUrl"]]
            resource = entry["resource"]
            rewrite_references(resource, self.ids)
            resource["id"] = key.split("/")[1]
            self.resources[key] = resource
            self.last_updated[key] = answer["response"]["lastModified"]


def rewrite_references(value: Any, ids: dict[str, str]) -> None:
    """Replace every ``reference`` naming a known fullUrl with its ``Type/id``, in place."""
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference in ids:
            value["reference"] = ids[reference]
        for child in value.values():
            rewrite_references(child, ids)
    elif isinstance(value, list):
        for child in value:
            rewrite_references(child, ids)


def new_corpus(kind: str) -> Corpus:
    return Corpus(kind, f"{TAG_SYSTEM}|{unique('c4bb')}")


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url + "/", timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def fixture_corpus(http: httpx.Client) -> Corpus:
    """The hand-written corpus, in two transactions (so ``_lastUpdated`` has two moments to tell apart)."""
    corpus = new_corpus("fixture")
    first, second = fixture_entries()
    corpus.transaction(http, first)
    corpus.transaction(http, second)
    return corpus


@pytest.fixture(scope="module")
def synthea_corpus(http: httpx.Client) -> Corpus:
    """The smallest smart-on-fhir bundles, one transaction each."""
    corpus = new_corpus("synthea")
    for path in synthea_bundles():
        corpus.transaction(http, financial_entries(json.loads(path.read_bytes())))
    return corpus


@pytest.fixture(params=["fixture", "synthea"])
def corpus(request: pytest.FixtureRequest) -> Corpus:
    loaded: Corpus = request.getfixturevalue(f"{request.param}_corpus")
    return loaded


def synthea_bundles() -> list[Path]:
    folder = shared("synthea", "smart-on-fhir-r4")
    return sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_size, p.name))[:SYNTHEA_BUNDLES]


def financial_entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of the loaded types, and (transitively) every entry they refer to, in bundle order."""
    by_url = {entry["fullUrl"]: entry for entry in bundle["entry"]}
    kept = {url for url, entry in by_url.items() if entry["resource"]["resourceType"] in LOADED_TYPES}
    pending = list(kept)
    while pending:
        for reference in references(by_url[pending.pop()]["resource"]):
            if reference in by_url and reference not in kept:
                kept.add(reference)
                pending.append(reference)
    return [entry for entry in bundle["entry"] if entry["fullUrl"] in kept]


def references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for child in value.values():
            yield from references(child)
    elif isinstance(value, list):
        for child in value:
            yield from references(child)


# --- the hand-written corpus --------------------------------------------------------------------------


def urn(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'https://github.com/fhir-server/tests/carin-bb/{name}')}"


def to(name: str) -> dict[str, str]:
    return {"reference": urn(name)}


def entry(name: str, resource: Resource) -> dict[str, Any]:
    return {"fullUrl": urn(name), "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def item(sequence: int, code: str, **serviced: Any) -> dict[str, Any]:
    return {"sequence": sequence, "productOrService": concept("http://www.ama-assn.org/go/cpt", code), **serviced}


def eob(claim_type: str, patient: str, insurer: str, provider: str, coverage: str, **rest: Any) -> Resource:
    return {
        "resourceType": "ExplanationOfBenefit",
        "status": "active",
        "type": concept(CLAIM_TYPE, claim_type),
        "use": "claim",
        "patient": to(patient),
        "insurer": to(insurer),
        "provider": to(provider),
        "outcome": "complete",
        "insurance": [{"focal": True, "coverage": to(coverage)}],
        **rest,
    }


def claim(*parties: str, status: str, created: str) -> Resource:
    """A Claim of type, patient, insurer, provider and coverage (by fixture name)."""
    claim_type, patient, insurer, provider, coverage = parties
    return {
        "resourceType": "Claim",
        "status": status,
        "type": concept(CLAIM_TYPE, claim_type),
        "use": "claim",
        "patient": to(patient),
        "created": created,
        "insurer": to(insurer),
        "provider": to(provider),
        "priority": concept("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
        "insurance": [{"sequence": 1, "focal": True, "coverage": to(coverage)}],
    }


def claim_response(request: str, patient: str, insurer: str, status: str, created: str) -> Resource:
    return {
        "resourceType": "ClaimResponse",
        "status": status,
        "type": concept(CLAIM_TYPE, "institutional"),
        "use": "claim",
        "patient": to(patient),
        "created": created,
        "insurer": to(insurer),
        "request": to(request),
        "outcome": "complete",
    }


def fixture_entries() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two patients, two payers, a provider organization, two practitioners, their coverages, claims,
    claim responses, and four EOBs (the last two in a second transaction)."""
    people = [
        entry("patient-a", {"resourceType": "Patient", "name": [{"family": "Carin", "given": ["Ada"]}]}),
        entry("patient-b", {"resourceType": "Patient", "name": [{"family": "Button", "given": ["Bo"]}]}),
        entry("payer-1", {"resourceType": "Organization", "name": "Acme Health Plan"}),
        entry("payer-2", {"resourceType": "Organization", "name": "Beta Insurance"}),
        entry("hospital", {"resourceType": "Organization", "name": "Springfield General"}),
        entry("dr-one", {"resourceType": "Practitioner", "name": [{"family": "One"}]}),
        entry("dr-two", {"resourceType": "Practitioner", "name": [{"family": "Two"}]}),
    ]
    coverages = [
        entry("coverage-a", {"resourceType": "Coverage", "status": "active", "beneficiary": to("patient-a"),
                             "payor": [to("payer-1")]}),
        entry("coverage-b", {"resourceType": "Coverage", "status": "cancelled", "beneficiary": to("patient-b"),
                             "payor": [to("payer-2"), to("patient-b")]}),
    ]  # fmt: skip
    claims = [
        entry(
            "claim-1",
            claim(
                "institutional", "patient-a", "payer-1", "hospital", "coverage-a", status="active", created="2024-01-16"
            ),
        ),
        entry(
            "claim-2",
            claim("pharmacy", "patient-a", "payer-1", "dr-two", "coverage-a", status="draft", created="2024-02-21"),
        ),
        entry(
            "claim-3",
            claim(
                "professional", "patient-b", "payer-2", "hospital", "coverage-b", status="active", created="2024-04-02"
            ),
        ),
        entry("response-1", claim_response("claim-1", "patient-a", "payer-1", "active", "2024-01-20T10:00:00Z")),
        entry("response-3", claim_response("claim-3", "patient-b", "payer-2", "cancelled", "2024-04-10")),
    ]
    eobs = [
        entry(
            "eob-inpatient",
            eob(
                "institutional",
                "patient-a",
                "payer-1",
                "hospital",
                "coverage-a",
                identifier=[{"system": "https://example.org/claim-id", "value": "INP-1"}],
                billablePeriod={"start": "2024-01-10", "end": "2024-01-15"},
                created="2024-01-20T10:00:00Z",
                claim=to("claim-1"),
                claimResponse=to("response-1"),
                careTeam=[{"sequence": 1, "provider": to("dr-one")}],
                item=[item(1, "99223")],
            ),
        ),
        entry(
            "eob-pharmacy",
            eob(
                "pharmacy",
                "patient-a",
                "payer-1",
                "dr-two",
                "coverage-a",
                identifier=[{"system": "https://example.org/claim-id", "value": "RX-1"}],
                created="2024-02-21",
                claim=to("claim-2"),
                careTeam=[{"sequence": 1, "provider": to("dr-two")}],
                item=[item(1, "J3490", servicedDate="2024-02-20")],
            ),
        ),
    ]
    later = [
        entry("eob-professional", eob(
            "professional", "patient-b", "payer-2", "hospital", "coverage-b",
            identifier=[{"system": "https://example.org/claim-id", "value": "PRO-1"}],
            billablePeriod={"start": "2024-03-28", "end": "2024-04-01"},
            created="2024-04-02", claim=to("claim-3"),
            careTeam=[{"sequence": 1, "provider": to("dr-one")}, {"sequence": 2, "provider": to("hospital")}],
            item=[item(1, "99213", servicedPeriod={"start": "2024-03-29T09:00:00Z", "end": "2024-03-29T10:00:00Z"}),
                  item(2, "93000", servicedDate="2024-03-31")],
        )),
        entry("eob-oral", eob(
            "oral", "patient-b", "payer-2", "dr-one", "coverage-b",
            identifier=[{"system": "https://example.org/claim-id", "value": "ORAL-1"}],
            created="2024-05-02",
            item=[item(1, "D0120", servicedPeriod={"start": "2024-05-01T08:30:00Z"})],
        )),
    ]  # fmt: skip
    return people + coverages + claims + eobs, later


# --- searching ------------------------------------------------------------------------------------------


def search(client: httpx.Client, corpus: Corpus, path: str, params: Params) -> tuple[set[str], set[str]]:
    """The matches and the included resources of a search restricted to the corpus's tag (one page)."""
    response = client.get(path, params=[*params, ("_tag", corpus.tag), ("_count", "1000")])
    assert response.status_code == 200, f"{path}?{params}: {response.text[:1000]}"
    bundle = response.json()
    assert not [link for link in bundle.get("link", ()) if link["relation"] == "next"]
    found: dict[str, set[str]] = {"match": set(), "include": set()}
    for item in bundle.get("entry", ()):
        resource = item["resource"]
        found[item["search"]["mode"]].add(f"{resource['resourceType']}/{resource['id']}")
    return found["match"], found["include"]


def check(client: httpx.Client, corpus: Corpus, resource_type: str, params: Params, expected: set[str]) -> None:
    matches, _ = search(client, corpus, resource_type, params)
    assert matches == expected, f"{resource_type}?{params}"


def some_not_all(expected: set[str], corpus: Corpus, resource_type: str) -> bool:
    return 0 < len(expected) < len(corpus.of_type(resource_type))


def middle_out(values: list[str]) -> list[str]:
    """The values ordered from the middle outwards, so picks are typical values rather than extremes."""
    ordered = sorted(set(values))
    middle = len(ordered) // 2
    return sorted(ordered, key=lambda v: abs(ordered.index(v) - middle))


def moments(value: Any) -> list[str]:
    """The date strings of a date value or a Period."""
    return [value] if isinstance(value, str) else [m for m in (value.get("start"), value.get("end")) if m]


def date_queries(corpus: Corpus, resource_type: str, rule: Rule) -> Iterator[str]:
    """For each prefix a ``prefix+date`` (day or month of a value in the data) selecting some but not all."""
    found = [m for value in corpus.values(resource_type, rule) for m in moments(value)]
    candidates = middle_out([m[:10] for m in found] + [m[:7] for m in found])
    for prefix in DATE_PREFIXES:
        queries = [prefix + c for c in candidates]
        selective = [
            q for q in queries if some_not_all(corpus.expected(resource_type, [(rule, q)]), corpus, resource_type)
        ]
        assert selective, f"no {prefix} value selects some but not all {resource_type} in {corpus.kind}"
        yield selective[0]


# --- the registry and the CapabilityStatement -----------------------------------------------------------

IG_PARAMETERS = {
    "billable-period-start": ("date", "ExplanationOfBenefit.billablePeriod.start"),
    "insurer": ("reference", "ExplanationOfBenefit.insurer"),
    "service-date": ("date", "ExplanationOfBenefit.billablePeriod | ExplanationOfBenefit.item.serviced"),
    "service-start-date": (
        "date",
        "ExplanationOfBenefit.billablePeriod.start | ExplanationOfBenefit.item.serviced.ofType(date)"
        " | ExplanationOfBenefit.item.serviced.ofType(Period).start",
    ),
    "type": ("token", "ExplanationOfBenefit.type"),
}


def test_ig_bundle_is_valid_r4_and_c4bb_2_1() -> None:
    from fhir.resources.R4B.bundle import Bundle

    (path,) = [p for p in search_parameter_bundles() if p.name == "carin-bb-search-parameters.json"]
    bundle = orjson.loads(path.read_bytes())
    Bundle.model_validate(bundle)
    by_code = {e["resource"]["code"]: e["resource"] for e in bundle["entry"]}
    assert set(by_code) == set(IG_PARAMETERS)
    for code, (kind, expression) in IG_PARAMETERS.items():
        parameter = by_code[code]
        assert parameter["url"] == f"{C4BB}explanationofbenefit-{code}"
        assert (parameter["type"], parameter["expression"], parameter["base"]) == (
            kind,
            expression,
            ["ExplanationOfBenefit"],
        )
        assert parameter["version"] == "2.1.0"
    assert by_code["insurer"]["target"] == ["Organization"]


def test_ig_parameters_are_in_the_registry_compiled() -> None:
    for code, (kind, expression) in IG_PARAMETERS.items():
        param = search_param("ExplanationOfBenefit", code)
        assert param is not None, code
        assert (param.url, param.type, param.expression) == (f"{C4BB}explanationofbenefit-{code}", kind, expression)
        assert param.paths and param.fhirpath == (), f"{code} should compile to JSON walks"
    service_start = search_param("ExplanationOfBenefit", "service-start-date")
    assert service_start is not None and service_start.paths == (
        ElementPath(("billablePeriod", "start"), "dateTime"),
        ElementPath(("item", "servicedDate"), "date"),
        ElementPath(("item", "servicedPeriod", "start"), "dateTime"),
    )
    # the guide's other EOB parameters are the core ones, unchanged
    patient = search_param("ExplanationOfBenefit", "patient")
    assert patient is not None and patient.url == "http://hl7.org/fhir/SearchParameter/ExplanationOfBenefit-patient"


def test_registry_provenance_names_the_ig_bundle() -> None:
    header = (Path(generate_registry.__file__).parent / "generated" / "search_parameters.py").read_text()
    (path,) = [p for p in search_parameter_bundles() if p.name == "carin-bb-search-parameters.json"]
    assert "Source: ig/carin-bb-search-parameters.json" in header
    assert "5 SearchParameters of http://hl7.org/fhir/us/carin-bb 2.1.0" in header
    assert f"sha256 {generate_registry.sha256(path)}" in header


def test_ig_parameter_redefining_a_core_one_fails_generation(tmp_path: Path) -> None:
    bundle = orjson.loads(search_parameter_bundles()[0].read_bytes())
    clash = copy.deepcopy(bundle["entry"][0])
    clash["resource"] |= {"url": f"{C4BB}explanationofbenefit-patient", "code": "patient"}
    bundle["entry"].append(clash)
    redefining = tmp_path / "clash.json"
    redefining.write_bytes(orjson.dumps(bundle))
    with pytest.raises(ValueError, match=r"duplicate search parameter ExplanationOfBenefit\.patient: "):
        generate_registry.generate(shared("fhir-r4", "search-parameters.json"), tmp_path / "out", [redefining])


def test_capability_statement_lists_c4bb(http: httpx.Client) -> None:
    response = http.get("metadata")
    assert response.status_code == 200
    resources = {r["type"]: r for r in response.json()["rest"][0]["resource"]}
    eob_params = {p["name"]: p for p in resources["ExplanationOfBenefit"]["searchParam"]}
    for code, (kind, _) in IG_PARAMETERS.items():
        assert eob_params[code] == {"name": code, "definition": f"{C4BB}explanationofbenefit-{code}", "type": kind}
    assert eob_params["patient"]["definition"] == "http://hl7.org/fhir/SearchParameter/ExplanationOfBenefit-patient"
    assert {"_id", "_lastUpdated", "identifier"} <= set(eob_params)
    includes = resources["ExplanationOfBenefit"]["searchInclude"]
    assert {f"ExplanationOfBenefit:{code}" for code in EOB_INCLUDES} <= set(includes)
    assert "ExplanationOfBenefit:insurer" in resources["Organization"]["searchRevInclude"]
    assert "Coverage:payor" in resources["Coverage"]["searchInclude"]


# --- ExplanationOfBenefit: the C4BB searches --------------------------------------------------------------


def test_id(http: httpx.Client, corpus: Corpus) -> None:
    eobs = sorted(corpus.of_type("ExplanationOfBenefit"))
    wanted = {eobs[0], eobs[-1]}
    check(http, corpus, "ExplanationOfBenefit", [("_id", ",".join(k.split("/")[1] for k in wanted))], wanted)
    check(http, corpus, "ExplanationOfBenefit", [("_id", eobs[1].split("/")[1])], {eobs[1]})


def test_patient(http: httpx.Client, corpus: Corpus) -> None:
    for patient in corpus.of_type("Patient"):
        expected = corpus.expected("ExplanationOfBenefit", [(EOB["patient"], patient)])
        assert some_not_all(expected, corpus, "ExplanationOfBenefit")
        check(http, corpus, "ExplanationOfBenefit", [("patient", patient)], expected)
        check(http, corpus, "ExplanationOfBenefit", [("patient", patient.split("/")[1])], expected)


def test_last_updated(http: httpx.Client, corpus: Corpus) -> None:
    eobs = corpus.of_type("ExplanationOfBenefit")
    moments = middle_out([corpus.last_updated[key] for key in eobs])
    for prefix in ("ge", "lt", "gt", "le", "eq"):
        picks = ({k for k in eobs if value_matches("date", corpus.last_updated[k], prefix + m)} for m in moments)
        query, expected = next(
            (
                (prefix + m, e)
                for m, e in zip(moments, picks, strict=True)
                if some_not_all(e, corpus, "ExplanationOfBenefit")
            ),
            (None, set()),
        )
        assert query is not None, f"{prefix}: the corpus is loaded in several transactions"
        check(http, corpus, "ExplanationOfBenefit", [("_lastUpdated", query)], expected)


def test_type(http: httpx.Client, corpus: Corpus) -> None:
    eobs = [corpus.resources[key] for key in corpus.of_type("ExplanationOfBenefit")]
    codes = sorted({c["code"] for r in eobs for c in r["type"]["coding"]} | {"vision"})
    queries = [f"{CLAIM_TYPE}|{code}" for code in codes] + codes + [f"{CLAIM_TYPE}|vision,{CLAIM_TYPE}|{codes[0]}"]
    for query in queries:
        expected = corpus.expected("ExplanationOfBenefit", [(EOB["type"], query)])
        check(http, corpus, "ExplanationOfBenefit", [("type", query)], expected)
    if corpus.kind == "fixture":
        assert codes == ["institutional", "oral", "pharmacy", "professional", "vision"]


def test_identifier(http: httpx.Client, corpus: Corpus) -> None:
    eobs = sorted(corpus.of_type("ExplanationOfBenefit"))
    identifier = corpus.resources[eobs[len(eobs) // 2]]["identifier"][0]
    for query in (f"{identifier['system']}|{identifier['value']}", identifier["value"], f"{identifier['system']}|"):
        expected = corpus.expected("ExplanationOfBenefit", [(EOB["identifier"], query)])
        assert expected, query
        check(http, corpus, "ExplanationOfBenefit", [("identifier", query)], expected)
    by_value = corpus.expected("ExplanationOfBenefit", [(EOB["identifier"], identifier["value"])])
    assert some_not_all(by_value, corpus, "ExplanationOfBenefit")


@pytest.mark.parametrize("code", ["billable-period-start", "service-date", "service-start-date"])
def test_service_dates(http: httpx.Client, corpus: Corpus, code: str) -> None:
    rule = EOB[code]
    failures = []
    for query in date_queries(corpus, "ExplanationOfBenefit", rule):
        expected = corpus.expected("ExplanationOfBenefit", [(rule, query)])
        matches, _ = search(http, corpus, "ExplanationOfBenefit", [(code, query)])
        if matches != expected:
            failures.append(f"{code}={query}: got {sorted(matches)}, expected {sorted(expected)}")
    assert not failures, "\n".join(failures)


def test_service_start_date_reads_each_eob_shape(http: httpx.Client, fixture_corpus: Corpus) -> None:
    """The fixture's four shapes, by name: billablePeriod.start, item.servicedDate, servicedPeriod.start."""
    names = {fixture_corpus.ids[urn(n)]: n for n in ("eob-inpatient", "eob-pharmacy", "eob-professional", "eob-oral")}
    for query, wanted in [
        ("2024-01-10", {"eob-inpatient"}),  # billablePeriod.start
        ("2024-02-20", {"eob-pharmacy"}),  # item.servicedDate
        ("2024-03", {"eob-professional"}),  # billablePeriod.start, servicedPeriod.start and servicedDate
        ("2024-05-01", {"eob-oral"}),  # an open servicedPeriod's start
        ("2024-01-12", set()),  # inside a billable period, but no start there
    ]:
        matches, _ = search(http, fixture_corpus, "ExplanationOfBenefit", [("service-start-date", query)])
        assert {names[m] for m in matches} == wanted, query
    matches, _ = search(http, fixture_corpus, "ExplanationOfBenefit", [("service-date", "2024-01-12")])
    assert matches == set(), "eq needs the whole billable period inside the day"
    matches, _ = search(http, fixture_corpus, "ExplanationOfBenefit", [("service-date", "ge2025")])
    assert {names[m] for m in matches} == {"eob-oral"}, "an open service period reaches every later date"


def test_includes(http: httpx.Client, corpus: Corpus) -> None:
    patient = sorted(corpus.of_type("Patient"))[0]
    selected = corpus.expected("ExplanationOfBenefit", [(EOB["patient"], patient)])
    for code in EOB_INCLUDES:
        params = [("patient", patient), ("_include", f"ExplanationOfBenefit:{code}")]
        matches, included = search(http, corpus, "ExplanationOfBenefit", params)
        assert matches == selected, code
        expected = corpus.targets(selected, EOB[code])
        assert included == expected, code
        if corpus.kind == "fixture":
            assert expected, f"the fixture gives {code} something to include"
    params = [("patient", patient)] + [("_include", f"ExplanationOfBenefit:{code}") for code in EOB_INCLUDES]
    _, included = search(http, corpus, "ExplanationOfBenefit", params)
    assert included == set().union(*(corpus.targets(selected, EOB[code]) for code in EOB_INCLUDES))


def test_insurer_and_coverage_include_only_what_the_matches_name(http: httpx.Client, fixture_corpus: Corpus) -> None:
    corpus = fixture_corpus
    payer = corpus.ids[urn("payer-2")]
    selected = corpus.expected("ExplanationOfBenefit", [(EOB["insurer"], payer)])
    assert len(selected) == 2
    params = [
        ("insurer", payer),
        ("_include", "ExplanationOfBenefit:insurer"),
        ("_include", "ExplanationOfBenefit:coverage"),
    ]
    matches, included = search(http, corpus, "ExplanationOfBenefit", params)
    assert matches == selected
    assert included == {payer, corpus.ids[urn("coverage-b")]}
    reverse = [("_id", payer.split("/")[1]), ("_revinclude", "ExplanationOfBenefit:insurer")]
    _, referrers = search(http, corpus, "Organization", reverse)
    assert referrers == selected


# --- Coverage, Claim, ClaimResponse: representative R4 parameters ---------------------------------------


def financial_cases(corpus: Corpus) -> Iterator[tuple[str, str, str, set[str]]]:
    """(type, code, query, expected) for each FINANCIAL parameter over the values the corpus holds."""
    for resource_type, rules in FINANCIAL.items():
        if not corpus.of_type(resource_type):
            continue
        for code, rule in rules.items():
            if rule.kind == "date":
                queries = list(date_queries(corpus, resource_type, rule))
            elif rule.kind == "reference":
                queries = sorted({value["reference"] for value in corpus.values(resource_type, rule)})
            else:
                queries = sorted(set(corpus.values(resource_type, rule)))
            for query in queries:
                yield resource_type, code, query, corpus.expected(resource_type, [(rule, query)])


def test_financial_resources(http: httpx.Client, corpus: Corpus) -> None:
    cases = list(financial_cases(corpus))
    searched = {(t, code) for t, code, _, _ in cases}
    if corpus.kind == "fixture":
        assert searched == {(t, code) for t, rules in FINANCIAL.items() for code in rules}
        assert any(some_not_all(expected, corpus, t) for t, code, _, expected in cases if code == "payor")
    else:
        assert {code for t, code in searched if t == "Claim"} == set(FINANCIAL["Claim"]) - {"insurer"}
    failures = []
    for resource_type, code, query, expected in cases:
        matches, _ = search(http, corpus, resource_type, [(code, query)])
        if matches != expected:
            failures.append(f"{resource_type}?{code}={query}: got {sorted(matches)}, expected {sorted(expected)}")
    assert not failures, "\n".join(failures)


def test_coverage_payor_include(http: httpx.Client, fixture_corpus: Corpus) -> None:
    corpus = fixture_corpus
    beneficiary = corpus.ids[urn("patient-b")]
    matches, included = search(http, corpus, "Coverage", [("beneficiary", beneficiary), ("_include", "Coverage:payor")])
    assert matches == {corpus.ids[urn("coverage-b")]}
    assert included == {corpus.ids[urn("payer-2")], beneficiary}
