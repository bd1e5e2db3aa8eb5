"""Validation cost per resource over the resources of 10 Synthea bundles.

Prints µs/resource for the whole ``validate_resource`` and for its two passes alone (the JSON walk and
the fhir.resources R4B ``model_validate``), overall and for the most common resource types.

    python bench/validate.py [--bundles 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fhir_server.validation import validate_resource  # noqa: E402
from fhir_server.validation.models import model_class  # noqa: E402
from fhir_server.validation.walk import ResourceWalk  # noqa: E402
from tests.shared_data import SHARED  # noqa: E402

Resource = dict[str, Any]


def synthea_resources(bundles: int) -> list[Resource]:
    """The entry resources of the first ``bundles`` Synthea bundles (sorted by path)."""
    paths = sorted(SHARED.glob("synthea/*/*.json"))[:bundles]
    return [entry["resource"] for path in paths for entry in orjson.loads(path.read_bytes())["entry"]]


def walk_only(resource: Resource) -> None:
    """The JSON pass alone."""
    ResourceWalk(check_formats=False).resource(resource, resource["resourceType"])


def model_only(resource: Resource) -> None:
    """The fhir.resources R4B model alone."""
    model = model_class(resource["resourceType"])
    if model is not None:
        model.model_validate(resource)


def per_type_us(resources: list[Resource], check: Callable[[Resource], None], repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` µs per resource, per resource type and overall (key ``*``)."""
    best: dict[str, float] = defaultdict(lambda: float("inf"))
    counts: dict[str, int] = defaultdict(int)
    for resource in resources:
        counts[resource["resourceType"]] += 1
    for _ in range(repeat):
        spent: dict[str, float] = defaultdict(float)
        for resource in resources:
            start = time.perf_counter()
            check(resource)
            spent[resource["resourceType"]] += time.perf_counter() - start
        for name, seconds in spent.items():
            best[name] = min(best[name], seconds)
        best["*"] = min(best["*"], sum(spent.values()))
    counts["*"] = len(resources)
    return {name: best[name] * 1e6 / counts[name] for name in best}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    resources = synthea_resources(args.bundles)
    validate_resource(resources[0])  # compile the element tree and load the bindings outside the timing
    columns = {
        "validate_resource": per_type_us(resources, validate_resource, args.repeat),
        "JSON walk": per_type_us(resources, walk_only, args.repeat),
        "model_validate": per_type_us(resources, model_only, args.repeat),
    }
    counts: dict[str, int] = defaultdict(int)
    for resource in resources:
        counts[resource["resourceType"]] += 1
    print(f"{len(resources)} resources from {args.bundles} Synthea bundles; µs/resource, best of {args.repeat}")
    print(f"{'type':<24}{'count':>7}" + "".join(f"{name:>20}" for name in columns))
    rows = ["*", *sorted((n for n in counts if counts[n] >= 20), key=lambda n: -counts[n])]
    for name in rows:
        count = len(resources) if name == "*" else counts[name]
        label = "all" if name == "*" else name
        print(f"{label:<24}{count:>7}" + "".join(f"{column[name]:>20.1f}" for column in columns.values()))


if __name__ == "__main__":
    main()
