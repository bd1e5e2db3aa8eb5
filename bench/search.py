"""Search latency benchmark on a large Synthea-grown data set in PostgreSQL: p50/p95 per query over HTTP.

Measures sequential ``GET`` latency (request sent to body received) of typical clinical searches: Patient by
name, birthdate and identifier; a patient's Observations by code and date range sorted by date; a patient's
lab results paged 50 at a time through the ``next`` links (each page timed); Encounters since a date; active
MedicationRequests; ``_revinclude``; a chained parameter; ``_has``. Every repetition uses different values
picked from the data (real patient ids, names, codes, dates), after a warm-up. A query the server rejects as
not supported (400 ``not-supported``) is reported as unsupported. Target: p95 < 20 ms for each.

Steps: generate the NDJSON with bench/grow_synthea.py when ``--data`` holds none; recreate the database and
load it with ``fhir-server import`` (unless ``--skip-load``; ``ANALYZE`` every minute meanwhile, as autovacuum
would); ``VACUUM (ANALYZE)``; start ``fhir-server serve``
(1 worker); time the queries. ``--explain`` then restarts the server with ``auto_explain`` (ANALYZE, BUFFERS)
on its connections (needs a superuser), runs each query 20 times and prints the slowest statement's plan as
PostgreSQL executed it (generic plans of prepared statements included).

Usage:
    python bench/search.py [--target 1000000] [--data DIR] [--database-url URL] [--repeat N] [--skip-load]
                           [--jobs N] [--explain]
Defaults: data in bench/out/search-<target>/, database fhir_bench_search on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, make_url, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import server
from bench.grow_synthea import REPO, grow, shared_data

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fhir_bench_search"
TARGET_MS = 20.0
WARMUP = 5
MAX_PAGES = 40
LOINC = "http://loinc.org"
EXPLAIN_LOG = "FHIR_BENCH_EXPLAIN_LOG"
EXPLAIN_RUNS = 20
AUTO_EXPLAIN = {
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_level": "notice",
}

Params = list[tuple[str, str]]


# ---------------------------------------------------------------- data set and database


def ensure_data(folder: Path, target: int) -> None:
    """Generate ``target`` resources into ``folder`` unless it already holds NDJSON."""
    if any(folder.glob("*.ndjson")):
        return
    print(f"generating {target:,} resources into {folder} ...", file=sys.stderr)
    counts = grow(folder, target, shared_data() / "synthea")
    print(f"generated {sum(counts.values()):,} resources", file=sys.stderr)


def count_lines(folder: Path) -> int:
    total = 0
    for path in folder.glob("*.ndjson"):
        with path.open("rb") as f:
            while chunk := f.read(1 << 24):
                total += chunk.count(b"\n")
    return total


def recreate_database(url: str) -> None:
    name = make_url(url).database
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SystemExit(f"database name {name!r} must be a plain identifier")
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def load(url: str, folder: Path, jobs: int = 1) -> None:
    """Recreate the database and import ``folder`` with ``fhir-server import`` (``jobs`` processes, each on its
    own share of the per-type files); print the load rate."""
    recreate_database(url)
    migrate = [sys.executable, "-m", "fhir_server.cli", "--database-url", url, "migrate"]
    subprocess.run(migrate, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    expected = count_lines(folder)
    print(f"importing {expected:,} resources from {folder} with {jobs} process(es) ...", file=sys.stderr)
    started = time.perf_counter()
    command = ["nice", "-n", "10", sys.executable, "-m", "fhir_server.cli", "--database-url", url, "import"]
    quiet = ["--quiet"] if jobs > 1 else []
    processes = [
        subprocess.Popen([*command, *quiet, *map(str, share)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for share in shares(sorted(folder.glob("*.ndjson")), jobs)
    ]
    with analyzing(url):
        outputs = [process.communicate()[0] for process in processes]
    elapsed = time.perf_counter() - started
    imported = sum(int(m.group(1)) for out in outputs for m in re.finditer(r"imported (\d+) resources", out))
    failed = sum(int(m.group(1)) for out in outputs for m in re.finditer(r"; (\d+) errors", out))
    print(
        f"load: {imported:,} of {expected:,} resources imported ({failed:,} errors) in {elapsed:.0f} s "
        f"= {imported / elapsed:,.0f} resources/s"
    )


@contextmanager
def analyzing(url: str, first: float = 15, every: float = 60) -> Iterator[None]:
    """``ANALYZE`` now and then while the body runs, as autovacuum would (it is off on some servers, e.g. this
    one). Without it the importer's cached generic plan for its per-resource lookup, made while the table was
    empty, keeps scanning a whole resource type per lookup and the load slows down quadratically."""
    stop = threading.Event()

    def loop() -> None:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        wait = first
        while not stop.wait(wait):
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
            wait = every
        engine.dispose()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def shares(files: list[Path], jobs: int) -> list[list[Path]]:
    """``files`` split into up to ``jobs`` groups of similar total size (largest first, into the lightest)."""
    groups: list[list[Path]] = [[] for _ in range(max(1, min(jobs, len(files))))]
    sizes = [0] * len(groups)
    for path in sorted(files, key=lambda p: -p.stat().st_size):
        lightest = sizes.index(min(sizes))
        groups[lightest].append(path)
        sizes[lightest] += path.stat().st_size
    return groups


def analyze(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        started = time.perf_counter()
        conn.execute(text("VACUUM (ANALYZE)"))
        size = conn.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar()
    engine.dispose()
    print(f"VACUUM (ANALYZE) in {time.perf_counter() - started:.0f} s; database size {size}")


# ---------------------------------------------------------------- parameter values picked from the data


@dataclass
class Samples:
    """Real values from the NDJSON: patients, and (patient, code, date) of Observations, Encounters, ..."""

    patients: list[dict[str, str]] = field(default_factory=list)
    observations: list[tuple[str, str, str]] = field(default_factory=list)
    labs: list[str] = field(default_factory=list)
    encounters: list[tuple[str, str]] = field(default_factory=list)
    active_meds: list[str] = field(default_factory=list)


def random_lines(path: Path, rng: random.Random, wanted: int, keep: Callable[[dict[str, Any]], bool]) -> Iterator[Any]:
    """Up to ``wanted`` resources from random places in an NDJSON file that ``keep`` accepts."""
    size = path.stat().st_size if path.exists() else 0
    if not size:
        return
    found = 0
    with path.open("rb") as f:
        for _ in range(wanted * 50):
            f.seek(rng.randrange(size))
            f.readline()  # the rest of a line cut in the middle
            line = f.readline()
            if not line:  # past the last line: wrap around
                f.seek(0)
                line = f.readline()
            resource = orjson.loads(line)
            if keep(resource):
                yield resource
                found += 1
                if found >= wanted:
                    return


def subject_id(resource: dict[str, Any]) -> str:
    return str(resource.get("subject", {}).get("reference", "")).removeprefix("Patient/")


def day_of(resource: dict[str, Any], *fields: str) -> str | None:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start")
        if isinstance(value, str) and len(value) >= 10:
            return value[:10]
    return None


def patient_sample(resource: dict[str, Any]) -> dict[str, str] | None:
    names = [n["family"] for n in resource.get("name", []) if n.get("family")]
    identifiers = [i for i in resource.get("identifier", []) if i.get("system") and i.get("value")]
    if not names or not identifiers or not resource.get("birthDate"):
        return None
    identifier = identifiers[len(resource["id"]) % len(identifiers)]
    return {
        "id": resource["id"],
        "family": names[0],
        "birthdate": resource["birthDate"],
        "identifier": f"{identifier['system']}|{identifier['value']}",
    }


def is_lab(resource: dict[str, Any]) -> bool:
    return any(c.get("code") == "laboratory" for cat in resource.get("category", []) for c in cat.get("coding", []))


def loinc(resource: dict[str, Any]) -> str | None:
    codes = [c["code"] for c in resource.get("code", {}).get("coding", []) if c.get("system") == LOINC]
    return f"{LOINC}|{codes[0]}" if codes else None


def collect_samples(folder: Path, count: int, seed: int = 42) -> Samples:
    rng = random.Random(seed)
    samples = Samples()
    with (folder / "Patient.ndjson").open("rb") as f:
        patients = [p for p in (patient_sample(orjson.loads(line)) for line in f) if p]
    samples.patients = rng.sample(patients, min(count, len(patients)))
    for obs in random_lines(
        folder / "Observation.ndjson", rng, count, lambda r: bool(loinc(r) and day_of(r, "effectiveDateTime"))
    ):
        samples.observations.append((subject_id(obs), str(loinc(obs)), str(day_of(obs, "effectiveDateTime"))))
    samples.labs = [subject_id(o) for o in random_lines(folder / "Observation.ndjson", rng, count, is_lab)]
    for enc in random_lines(folder / "Encounter.ndjson", rng, count, lambda r: bool(day_of(r, "period"))):
        samples.encounters.append((subject_id(enc), str(day_of(enc, "period"))))
    active = random_lines(folder / "MedicationRequest.ndjson", rng, count, lambda r: r.get("status") == "active")
    samples.active_meds = [subject_id(m) for m in active]
    return samples


def shifted(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


# ---------------------------------------------------------------- the queries


@dataclass
class Query:
    """A search with a parameter list for repetition ``i``; ``pages`` follows ``next`` links."""

    label: str
    path: str
    params: Callable[[int], Params]
    pages: bool = False


def queries(s: Samples) -> list[Query]:
    def pick(values: list[Any], i: int) -> Any:
        if not values:
            raise LookupError("no sample values in the data")
        return values[i % len(values)]

    def obs_code(i: int) -> Params:
        patient, code, day = pick(s.observations, i)
        return [
            ("patient", patient),
            ("code", code),
            ("date", f"ge{shifted(day, -365)}"),
            ("date", f"le{shifted(day, 365)}"),
            ("_sort", "-date"),
        ]

    return [
        Query("Patient?name=<family>", "Patient", lambda i: [("name", pick(s.patients, i)["family"])]),
        Query("Patient?birthdate=<date>", "Patient", lambda i: [("birthdate", pick(s.patients, i)["birthdate"])]),
        Query("Patient?identifier=<sys|val>", "Patient", lambda i: [("identifier", pick(s.patients, i)["identifier"])]),
        Query("Observation?patient&code&date ge/le&_sort=-date", "Observation", obs_code),
        Query(
            "Observation?patient&category=laboratory&_count=50 (each page)",
            "Observation",
            lambda i: [("patient", pick(s.labs, i)), ("category", "laboratory"), ("_count", "50")],
            pages=True,
        ),
        Query(
            "Encounter?patient&date=ge<date>",
            "Encounter",
            lambda i: [("patient", pick(s.encounters, i)[0]), ("date", f"ge{shifted(pick(s.encounters, i)[1], -730)}")],
        ),
        Query(
            "MedicationRequest?patient&status=active",
            "MedicationRequest",
            lambda i: [("patient", pick(s.active_meds, i)), ("status", "active")],
        ),
        Query(
            "Patient?_id&_revinclude=Observation:subject&_count=10",
            "Patient",
            lambda i: [("_id", pick(s.patients, i)["id"]), ("_revinclude", "Observation:subject"), ("_count", "10")],
        ),
        Query(
            "Observation?subject:Patient.name=<family>",
            "Observation",
            lambda i: [("subject:Patient.name", pick(s.patients, i)["family"])],
        ),
        Query(
            "Patient?_has:Observation:patient:code=<loinc>",
            "Patient",
            lambda i: [("_has:Observation:patient:code", pick(s.observations, i)[1])],
        ),
    ]


# ---------------------------------------------------------------- timing


class SearchFailed(Exception):
    """The server answered other than 200: not supported (400 not-supported) or another error."""


@dataclass
class Page:
    ms: float
    matches: int
    included: int
    total: int | None
    next_url: str | None


def fetch(http: httpx.Client, url: str, params: Params | None = None) -> Page:
    started = time.perf_counter()
    response = http.get(url, params=tuple(params) if params else None)
    ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SearchFailed(describe_error(response))
    bundle = orjson.loads(response.content)
    modes = [e.get("search", {}).get("mode", "match") for e in bundle.get("entry", [])]
    following = [link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"]
    return Page(ms, modes.count("match"), modes.count("include"), bundle.get("total"), (following or [None])[0])


def describe_error(response: httpx.Response) -> str:
    try:
        issues = orjson.loads(response.content).get("issue", [])
    except orjson.JSONDecodeError:
        return f"error {response.status_code}"
    codes = {i.get("code") for i in issues}
    detail = "; ".join(str(i.get("diagnostics", "")) for i in issues)[:90]
    kind = "unsupported" if "not-supported" in codes else f"error {response.status_code}"
    return f"{kind}: {detail}"


def run_once(http: httpx.Client, base: str, query: Query, i: int) -> tuple[list[float], str]:
    """Latencies (one per page) and a result-count description for repetition ``i``."""
    page = fetch(http, f"{base}/{query.path}", query.params(i))
    times, matches, included, pages = [page.ms], page.matches, page.included, 1
    while query.pages and page.next_url and pages < MAX_PAGES:
        page = fetch(http, page.next_url)
        times.append(page.ms)
        matches, included, pages = matches + page.matches, included + page.included, pages + 1
    if query.pages:
        return times, f"{matches} in {pages} pages"
    shown = str(page.total) if page.total is not None else f"{matches}{'+' if page.next_url else ''}"
    return times, shown + (f" +{included} incl" if included else "")


@dataclass
class Result:
    label: str
    times: list[float] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    error: str | None = None


def measure(http: httpx.Client, base: str, query: Query, repeat: int) -> Result:
    result = Result(query.label)
    try:
        for i in range(repeat, repeat + WARMUP):  # warm-up on other values than the timed ones
            run_once(http, base, query, i)
        for i in range(repeat):
            times, count = run_once(http, base, query, i)
            result.times.extend(times)
            result.counts.append(count)
    except (SearchFailed, LookupError) as exc:
        result.error = str(exc)
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


def typical_count(counts: list[str]) -> str:
    """The median repetition's result description (by its leading number)."""
    ranked = sorted(counts, key=lambda c: int(re.match(r"\d*", c).group() or 0))  # type: ignore[union-attr]
    return ranked[len(ranked) // 2] if ranked else ""


def print_table(results: list[Result]) -> None:
    width = max(len(r.label) for r in results)
    print(
        f"\n{'query':{width}s}  {'p50 ms':>8s}  {'p95 ms':>8s}  {'results (median)':>22s}  target p95 < {TARGET_MS:g} ms"
    )
    for r in results:
        if r.error is not None or not r.times:
            print(f"{r.label:{width}s}  {'-':>8s}  {'-':>8s}  {'-':>22s}  {r.error or 'no data'}")
            continue
        p50, p95 = percentile(r.times, 0.50), percentile(r.times, 0.95)
        verdict = "ok" if p95 < TARGET_MS else "SLOW"
        print(f"{r.label:{width}s}  {p50:8.1f}  {p95:8.1f}  {typical_count(r.counts):>22s}  {verdict}")


# ---------------------------------------------------------------- the server, optionally explaining


def serve() -> None:
    """Entry point of the server process: ``fhir-server`` with, when ``$FHIR_BENCH_EXPLAIN_LOG`` is set, every
    statement's executed plan appended to that file (see ``install_explain_hook``)."""
    log = os.environ.get(EXPLAIN_LOG)
    if log:
        install_explain_hook(Path(log))
    from fhir_server.cli import main

    sys.exit(main(sys.argv[1:]))


def install_explain_hook(log: Path) -> None:
    """``auto_explain`` on each new database connection, its output sent back as a NOTICE and appended to
    ``log``: the plans PostgreSQL really executed, including the generic plans of prepared statements (an
    ``EXPLAIN`` run by hand would plan with the actual values instead). ``LOAD`` needs a superuser."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    lock = threading.Lock()

    def append(entry: dict[str, str]) -> None:
        with lock, log.open("ab") as f:
            f.write(orjson.dumps(entry) + b"\n")

    def record(diagnostic: Any) -> None:
        message = str(diagnostic.message_primary or "")
        if "plan:" in message:
            append({"plan": message})

    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.add_notice_handler(record)
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("LOAD 'auto_explain'")
                for setting, value in AUTO_EXPLAIN.items():
                    cursor.execute(f"SET {setting} = {value}")
            dbapi_connection.commit()
        except Exception as exc:  # no superuser: the server runs on, without plans
            dbapi_connection.rollback()
            append({"error": f"auto_explain: {exc}"})

    event.listen(Pool, "connect", connect)


def running_server(url: str, explain_log: Path | None = None) -> Any:
    """The server (``serve`` above), explaining its statements into ``explain_log`` when given."""
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.search import serve; serve()"
    env = {EXPLAIN_LOG: str(explain_log) if explain_log is not None else ""}
    return server.running_server(url, 1, program=[sys.executable, "-c", code], env=env)


def explain_all(url: str, items: list[Query], runs: int) -> None:
    """Run each query ``runs`` times (enough for prepared statements to reach their generic plan) on a server
    that logs every executed plan; print how long the statements took and the slowest one's plan."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "explain.ndjson"
        log.touch()
        with running_server(url, log) as base, httpx.Client(timeout=300, trust_env=False) as http:
            for query in items:
                done = log.stat().st_size
                try:
                    for i in range(runs):
                        page = fetch(http, f"{base}/{query.path}", query.params(i))
                        if query.pages and page.next_url and i == runs - 1:
                            fetch(http, page.next_url)
                except (SearchFailed, LookupError) as exc:
                    print(f"\n=== {query.label}: {exc}")
                    continue
                with log.open("rb") as f:
                    f.seek(done)
                    print_plans(query, [orjson.loads(line) for line in f])


def print_plans(query: Query, entries: list[dict[str, str]]) -> None:
    errors = [e["error"] for e in entries if "error" in e]
    plans = [(plan_ms(e["plan"]), e["plan"]) for e in entries if "plan" in e and " resource" in e["plan"]]
    print(f"\n=== {query.label}")
    if not plans:
        print(f"no plans logged {errors[:1]}")
        return
    times = sorted(ms for ms, _ in plans)
    print(
        f"{len(plans)} statements; executor ms: min {times[0]:.1f}, median {times[len(times) // 2]:.1f}, "
        f"max {times[-1]:.1f}. Slowest:"
    )
    print(max(plans, key=lambda p: p[0])[1])


def plan_ms(plan: str) -> float:
    found = re.match(r"duration: ([0-9.]+) ms", plan)
    return float(found.group(1)) if found else 0.0


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=int, default=1_000_000, help="resources to generate when --data is empty")
    parser.add_argument("--data", type=Path, help="NDJSON folder (default bench/out/search-<target>)")
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help=f"PostgreSQL database, recreated (default {DEFAULT_URL})"
    )
    parser.add_argument("--repeat", type=int, default=50, help="timed repetitions per query")
    parser.add_argument("--skip-load", action="store_true", help="use the database as it is")
    parser.add_argument("--jobs", type=int, default=1, help="parallel import processes (default 1)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) per query")
    args = parser.parse_args()
    folder = args.data or REPO / "bench" / "out" / f"search-{args.target}"
    ensure_data(folder, args.target)
    if not args.skip_load:
        load(args.database_url, folder, args.jobs)
    analyze(args.database_url)
    items = queries(collect_samples(folder, args.repeat + WARMUP))
    before = os.getloadavg()[0]
    with running_server(args.database_url) as base, httpx.Client(timeout=300, trust_env=False) as http:
        results = [measure(http, base, q, args.repeat) for q in items]
    print_table(results)
    print(
        f"{args.repeat} timed repetitions per query after {WARMUP} warm-up ones; 1 server worker; machine load "
        f"average {before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)"
    )
    if args.explain:
        explain_all(args.database_url, items, EXPLAIN_RUNS)


if __name__ == "__main__":
    main()
