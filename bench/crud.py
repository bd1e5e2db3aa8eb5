"""Mixed CRUD benchmark with wrk (32 connections): req/s, p50 and p99, plus a read-only pass.

Mix per request: 60% read, 15% search (Patient?identifier=...), 15% create, 10% update.
Usage: python bench/crud.py [--backend sqlite|postgres|both] [--workers N] [--seconds S]
Needs `wrk` (Debian package wrk). Targets (issue 2): >= 5,000 req/s for the mix; read p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.server import database, running_server

SEED = 1000

LUA = r"""
local ids = {%(ids)s}
local body = '{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"new"}],"name":[{"family":"Bench","given":["Wrk"]}],"gender":"female","birthDate":"1980-01-01"}'
local counter = 0
request = function()
  counter = counter + 1
  local id = ids[(counter * 7919) %% #ids + 1]
  local pick = counter %% 20
  if %(read_only)s or pick < 12 then
    return wrk.format("GET", "%(path)s/Patient/" .. id)
  elseif pick < 15 then
    return wrk.format("GET", "%(path)s/Patient?identifier=urn:bench|" .. id)
  elseif pick < 18 then
    return wrk.format("POST", "%(path)s/Patient", {["Content-Type"]="application/fhir+json", ["Prefer"]="return=minimal"}, body)
  else
    local update = '{"resourceType":"Patient","id":"' .. id .. '","identifier":[{"system":"urn:bench","value":"' .. id .. '"}],"gender":"male"}'
    return wrk.format("PUT", "%(path)s/Patient/" .. id, {["Content-Type"]="application/fhir+json", ["Prefer"]="return=minimal"}, update)
  end
end
"""


def seed(base: str) -> list[str]:
    """SEED patients with known ids, created by one transaction."""
    ids = [f"bench-{i}" for i in range(SEED)]
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": i, "identifier": [{"system": "urn:bench", "value": i}]},
            "request": {"method": "PUT", "url": f"Patient/{i}"},
        }
        for i in ids
    ]
    httpx.post(
        base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, timeout=300
    ).raise_for_status()
    return ids


def run_wrk(base: str, ids: list[str], seconds: int, read_only: bool) -> dict[str, float]:
    path = "/" + base.split("/", 3)[3]
    script = LUA % {"ids": ",".join(f'"{i}"' for i in ids), "path": path, "read_only": str(read_only).lower()}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", f.name, base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(output: str) -> dict[str, float]:
    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(rate.group(1)) if rate else 0.0,
        "p50": ms("50%"),
        "p99": ms("99%"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        with database(backend) as url, running_server(url, args.workers) as base:
            ids = seed(base)
            run_wrk(base, ids, 3, read_only=True)  # warm up
            mixed = run_wrk(base, ids, args.seconds, read_only=False)
            reads = run_wrk(base, ids, args.seconds, read_only=True)
        for name, r in (("mix", mixed), ("read", reads)):
            print(
                f"{backend:9s} workers={args.workers} {name:4s}: {r['rps']:,.0f} req/s  p50 {r['p50']:.2f} ms  "
                f"p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']:.0f}"
            )


if __name__ == "__main__":
    main()
