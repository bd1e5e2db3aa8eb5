"""Grow the Synthea sample into a large NDJSON data set (one file per resource type) for search benchmarks.

Reads the transaction Bundles in ``$FHIR_SHARED_DATA/synthea`` (default ``../shared/data`` beside the repo) in
place and writes ``OUT_DIR/<Type>.ndjson`` until at least ``--target`` resources are written:

- the shared hospital/practitioner batch Bundles of fhir-data-pipes (``*Information*.json``) are written once;
  conditional references to them (``Practitioner?identifier=system|value``) become ``Practitioner/<id>``;
- every patient Bundle is then copied generation after generation (g = 0, 1, 2, ...). Each copy gets new
  ids (uuid5 of the original id and g; any other UUID, e.g. identifier values, is mapped the same way),
  ``urn:uuid:`` references become ``Type/<new id>``, Patient identifier values get a ``-g`` suffix, the
  family names of most generations get a two-letter suffix (so a name search stays selective), and every
  date, dateTime, instant and Period is shifted back by a whole number of days fixed per generation.

Streaming, bundle by bundle, so memory stays flat whatever the target.
Usage: python bench/grow_synthea.py OUT_DIR [--target 1000000]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = uuid.UUID("6f1c1f44-5a0c-4d52-9d4f-3a5c8e2b1f00")
_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# One pass over a resource's JSON, at the start of each string: a conditional reference, a UUID (``urn:uuid:``
# or bare: ids, identifier values) or a date. All start with '"', which keeps the scan fast.
_REWRITE = re.compile(
    rb'"(?:reference":"([A-Za-z]+\?[^"]*)"|(urn:uuid:)?(' + _UUID + rb')|([0-9]{4}-[0-9]{2}-[0-9]{2})(?=[T"]))'
)
SHARED_GLOB = "*Information*.json"
UNCHANGED_NAME_EVERY = 5  # generations 0, 5, 10, ... keep the original family names


def shared_data() -> Path:
    return Path(os.environ.get("FHIR_SHARED_DATA", REPO.parent / "shared" / "data"))


def source_bundles(synthea: Path) -> tuple[list[Path], list[Path]]:
    """(shared batch Bundles, patient transaction Bundles), both sorted."""
    shared = sorted(synthea.glob(f"*/{SHARED_GLOB}"))
    patients = sorted(p for p in synthea.glob("*/*.json") if p not in shared)
    if not patients:
        raise SystemExit(f"no Synthea bundles under {synthea}")
    return shared, patients


def day_offset(generation: int) -> int:
    """Whole days every date of ``generation`` moves back (0 for the original)."""
    return -((generation * 397) % 3653)


def name_suffix(generation: int) -> str:
    """Two letters appended to family names, or '' for the generations that keep the original names."""
    if generation % UNCHANGED_NAME_EVERY == 0:
        return ""
    return chr(ord("A") + generation % 26) + chr(ord("a") + (generation // 26) % 26)


class Writers:
    """One buffered NDJSON file per resource type, opened on first use; counts lines per type."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, IO[bytes]] = {}
        self.counts: Counter[str] = Counter()

    def write(self, resource_type: str, line: bytes) -> None:
        out = self.files.get(resource_type)
        if out is None:
            out = self.files[resource_type] = (self.folder / f"{resource_type}.ndjson").open("wb", buffering=1 << 20)
        out.write(line)
        out.write(b"\n")
        self.counts[resource_type] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        for out in self.files.values():
            out.close()


def write_shared(paths: list[Path], writers: Writers) -> dict[str, str]:
    """Write the shared batch resources once (original ids, first of each ifNoneExist key);
    return the conditional reference each ``ifNoneExist`` answers (``Type?criteria`` -> ``Type/id``)."""
    resolved: dict[str, str] = {}
    for path in paths:
        for entry in orjson.loads(path.read_bytes()).get("entry", []):
            resource, request = entry["resource"], entry.get("request", {})
            rtype = resource["resourceType"]
            key = f"{rtype}?{request['ifNoneExist']}" if request.get("ifNoneExist") else None
            if key is not None and key in resolved:
                continue
            if key is not None:
                resolved[key] = f"{rtype}/{resource['id']}"
            writers.write(rtype, orjson.dumps(resource))
    return resolved


class Generation:
    """The rewriting rules of one generation: id map, date shift, name and identifier suffixes."""

    def __init__(self, number: int, conditional: dict[str, str]) -> None:
        self.number = number
        self.conditional = conditional
        self.offset = timedelta(days=day_offset(number))
        self.suffix = name_suffix(number)
        self.ids: dict[bytes, bytes] = {}
        self.dates: dict[bytes, bytes] = {}
        self.unresolved: Counter[str] = Counter()

    def new_id(self, old: bytes) -> bytes:
        found = self.ids.get(old)
        if found is None:
            found = self.ids[old] = str(uuid.uuid5(NAMESPACE, f"{old.decode()}/{self.number}")).encode()
        return found

    def shift(self, day: bytes) -> bytes:
        found = self.dates.get(day)
        if found is None:
            try:
                found = (date.fromisoformat(day.decode()) + self.offset).isoformat().encode()
            except ValueError:
                found = day
            self.dates[day] = found
        return found

    def vary(self, resource: dict[str, Any]) -> None:
        """The structural changes: Patient identifier and family name suffixes."""
        if resource["resourceType"] != "Patient" or self.number == 0:
            return
        for identifier in resource.get("identifier", []):
            if isinstance(identifier.get("value"), str):
                identifier["value"] += f"-{self.number}"
        if self.suffix:
            for name in resource.get("name", []):
                if isinstance(name.get("family"), str):
                    name["family"] += self.suffix

    def rewriter(self, types: dict[bytes, bytes]) -> Callable[[re.Match[bytes]], bytes]:
        """The substitution for one Bundle, whose ``urn:uuid:`` entries have the resource ``types``."""

        def replace(match: re.Match[bytes]) -> bytes:
            conditional, urn, old, day = match.groups()
            if conditional is not None:
                target = self.conditional.get(conditional.decode())
                if target is None:
                    self.unresolved[conditional.decode().partition("?")[0]] += 1
                    return match.group(0)
                return b'"reference":"' + target.encode() + b'"'
            if old is not None:
                if urn is not None and old in types:
                    return b'"' + types[old] + b"/" + self.new_id(old)
                return b'"' + (urn or b"") + self.new_id(old)
            return b'"' + self.shift(day)

        return replace

    def resources(self, bundle: dict[str, Any], seen: set[str]) -> Iterator[tuple[str, bytes]]:
        """(type, NDJSON line) for each entry of ``bundle`` not already written in this generation."""
        entries = bundle.get("entry", [])
        types = {
            e["fullUrl"].removeprefix("urn:uuid:").encode(): e["resource"]["resourceType"].encode()
            for e in entries
            if e.get("fullUrl", "").startswith("urn:uuid:")
        }
        replace = self.rewriter(types)
        for entry in entries:
            resource = entry["resource"]
            key = f"{resource['resourceType']}/{resource.get('id')}"
            if key in seen:  # the same Organization/Practitioner in several SMART bundles
                continue
            seen.add(key)
            self.vary(resource)
            yield resource["resourceType"], _REWRITE.sub(replace, orjson.dumps(resource))


def grow(out: Path, target: int, synthea: Path, progress: bool = True) -> Counter[str]:
    """Write at least ``target`` resources to ``out``; return the count per type."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ndjson"):
        old.unlink()
    shared, patients = source_bundles(synthea)
    writers = Writers(out)
    started = time.perf_counter()
    unresolved: Counter[str] = Counter()
    try:
        conditional = write_shared(shared, writers)
        number = 0
        while writers.total < target:
            generation = Generation(number, conditional)
            seen: set[str] = set()
            for path in patients:
                for rtype, line in generation.resources(orjson.loads(path.read_bytes()), seen):
                    writers.write(rtype, line)
                if writers.total >= target:
                    break
            unresolved += generation.unresolved
            if progress:
                rate = writers.total / (time.perf_counter() - started)
                print(f"generation {number}: {writers.total:,} resources ({rate:,.0f}/s)", file=sys.stderr)
            number += 1
    finally:
        writers.close()
    if unresolved:
        print(f"warning: unresolved conditional references: {dict(unresolved)}", file=sys.stderr)
    return writers.counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (its *.ndjson files are replaced)")
    parser.add_argument("--target", type=int, default=1_000_000, help="minimum number of resources")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = grow(args.out, args.target, shared_data() / "synthea", progress=not args.quiet)
    elapsed = time.perf_counter() - started
    for rtype, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"{rtype:24s} {count:>10,}")
    total = sum(counts.values())
    print(f"{'total':24s} {total:>10,}  in {elapsed:.1f} s ({total / elapsed:,.0f} resources/s) -> {args.out}")


if __name__ == "__main__":
    main()
