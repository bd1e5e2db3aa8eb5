"""``fhir-server import`` of a large NDJSON file: resources/s and peak RSS, for two file sizes.

Flat memory means the peak RSS barely moves when the file grows. The file is made of the Synthea
Observations with fresh ids. Usage: python bench/import_memory.py [--mb 50 200] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.server import database

SYNTHEA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea" / "smart-on-fhir-r4"


def templates() -> list[dict]:
    bundle = orjson.loads(sorted(SYNTHEA.glob("*.json"))[0].read_bytes())
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]


def write_ndjson(path: Path, megabytes: int) -> int:
    base, count, size = templates(), 0, 0
    with path.open("wb") as out:
        while size < megabytes * 1024 * 1024:
            item = {**base[count % len(base)], "id": uuid.uuid4().hex}
            item.pop("subject", None)
            line = orjson.dumps(item) + b"\n"
            out.write(line)
            size += len(line)
            count += 1
    return count


def run_import(url: str, path: Path) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "import", "--quiet", str(path)],
        env={**os.environ, "FHIR_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return time.perf_counter() - started, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    for megabytes in args.mb:
        with tempfile.TemporaryDirectory() as folder, database(args.backend) as url:
            path = Path(folder) / "observations.ndjson"
            count = write_ndjson(path, megabytes)
            elapsed, peak = run_import(url, path)
        print(
            f"{args.backend:8s} {megabytes:5d} MB NDJSON, {count} resources: {count / elapsed:,.0f} resources/s, "
            f"peak RSS of the largest import so far {peak:,.0f} MB"
        )


if __name__ == "__main__":
    main()
