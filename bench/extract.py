"""Benchmark write-time index extraction over Synthea bundles: compiled walks vs fhirpathpy only.

Usage: python -m bench.extract [--bundles 10] [--fhirpath-sample 1000]

Prints CPU microseconds per resource (all entry resources of the first N bundles, alternating between
the two Synthea sets) for the compiled extraction: a first pass with cold value caches (normalised
strings, parsed dates and references repeat across resources), then repeated passes overall and for the
commonest types; and the fhirpathpy-only path over a sample.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fhir_server.search.extract import extract_index, extraction_plan
from fhir_server.search.params.index_rows import TABLES
from resources.registry import resource_types

SYNTHEA = Path(os.environ.get("FHIR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "synthea"
BASE_URL = "http://localhost:8080/fhir/"


def load_resources(bundle_count: int) -> list[dict[str, Any]]:
    """All entry resources of the first bundles of each Synthea set, interleaved."""
    sets = [sorted(p.glob("*.json")) for p in sorted(SYNTHEA.iterdir()) if p.is_dir()]
    paths = [p for pair in itertools.zip_longest(*sets) for p in pair if p][:bundle_count]
    return [e["resource"] for p in paths for e in orjson.loads(p.read_bytes())["entry"]]


def time_per_resource(resources: list[dict[str, Any]], extract: Callable[[dict[str, Any]], object]) -> float:
    """Best-of-5 CPU microseconds per resource (process time: steadier on a shared machine)."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for resource in resources:
            extract(resource)
        best = min(best, time.process_time() - start)
    return best / len(resources) * 1e6


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=10)
    parser.add_argument("--fhirpath-sample", type=int, default=1000)
    args = parser.parse_args()
    resources = load_resources(args.bundles)
    start = time.perf_counter()
    for resource_type in resource_types():
        extraction_plan(resource_type)
    print(f"plans for all {len(resource_types())} types: {(time.perf_counter() - start) * 1e3:.1f} ms")
    start = time.process_time()
    extracted = [extract_index(resource, BASE_URL) for resource in resources]
    cold = (time.process_time() - start) / len(resources) * 1e6
    rows = sum(len(r.rows(kind)) for r in extracted for kind in TABLES)
    print(f"{len(resources)} resources from {args.bundles} bundles, {rows / len(resources):.1f} rows each")
    print(f"compiled, first pass (cold value caches): {cold:6.1f} us/resource ({1e6 / cold:,.0f}/s)")
    compiled = time_per_resource(resources, lambda r: extract_index(r, BASE_URL))
    print(f"compiled, repeated:  {compiled:8.1f} us/resource  ({1e6 / compiled:,.0f} resources/s)")
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in resources:
        by_type[resource["resourceType"]].append(resource)
    for resource_type, group in sorted(by_type.items(), key=lambda kv: -len(kv[1]))[:8]:
        per = time_per_resource(group, lambda r: extract_index(r, BASE_URL))
        print(f"  {resource_type:22} {len(group):5}  {per:8.1f} us")
    sample = resources[:: max(1, len(resources) // args.fhirpath_sample)][: args.fhirpath_sample]
    slow = time_per_resource(sample, lambda r: extract_index(r, BASE_URL, fhirpath_only=True))
    print(f"fhirpathpy only: {slow:8.1f} us/resource over {len(sample)} ({1e6 / slow:,.0f} resources/s)")
    observations = [r for r in sample if r["resourceType"] == "Observation"]
    obs = time_per_resource(observations, lambda r: extract_index(r, BASE_URL, fhirpath_only=True))
    print(f"  Observation fhirpathpy only: {obs:8.1f} us over {len(observations)}")


if __name__ == "__main__":
    main()
