"""Ingest benchmark: the Synthea transaction Bundles POSTed over HTTP; prints resources/s per backend.

Usage: python bench/ingest.py [--backend sqlite|postgres|both] [--clients N] [--workers N] [--repeat N]
Target (issue 2): >= 5,000 resources/s on PostgreSQL on this 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.server import database, running_server

SYNTHEA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea"


def bundles() -> list[list[bytes]]:
    """Load phases, as raw bytes: the shared batch bundles, the fhir-data-pipes patients (whose conditional
    references need the shared ones), then the SMART patients (which POST Organizations with the same
    identifiers, so they must not run before the conditional references are resolved)."""
    pipes = SYNTHEA / "fhir-data-pipes-r4"
    shared = sorted(pipes.glob("*Information*.json"))
    patients = sorted(p for p in pipes.glob("*.json") if p not in shared)
    smart = sorted((SYNTHEA / "smart-on-fhir-r4").glob("*.json"))
    return [[p.read_bytes() for p in phase] for phase in (shared, patients, smart)]


def entry_count(raw: bytes) -> int:
    return len(orjson.loads(raw).get("entry", []))


def ingest(base: str, phases: list[list[bytes]], clients: int) -> tuple[int, float]:
    """POST the patient transaction bundles with ``clients`` concurrent clients; time only those."""
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    shared, *patient_phases = phases
    with httpx.Client(timeout=600) as http:
        for raw in shared:  # the shared Organizations/Practitioners others reference
            http.post(base, content=raw, headers=headers).raise_for_status()

        def post(raw: bytes) -> None:
            response = http.post(base, content=raw, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(response.text[:500])

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for phase in patient_phases:
                list(pool.map(post, phase))
        elapsed = time.perf_counter() - started
    return sum(entry_count(p) for phase in patient_phases for p in phase), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    payloads = bundles()
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        workers = 1 if backend == "sqlite" else args.workers
        with database(backend) as url, running_server(url, workers) as base:
            count, elapsed = ingest(base, payloads, args.clients)
        print(
            f"{backend:9s} workers={workers} clients={args.clients}: {count} resources in {elapsed:.1f} s "
            f"= {count / elapsed:,.0f} resources/s"
        )


if __name__ == "__main__":
    main()
