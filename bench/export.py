"""Bulk Data ``$export`` throughput and memory: a system export of about a million resources into NDJSON.

The export runs in the server's background worker, so the figures are the server process's: the time from
the kick-off (``GET /fhir/$export``, ``Prefer: respond-async``) to the manifest (status polled every
``--poll`` seconds), resources/s = resources exported / that time, and its resident memory sampled all along
(``/proc/PID/status``: VmRSS every ``--sample`` seconds, VmHWM for the peak), with its CPU use and the
machine's. Target: >= 50,000 resources/s with flat memory. The manifest's counts are checked against the
database (per type) and against the lines really written.

Backends:
- ``postgres`` (default): the database bench/search.py builds, ``fhir_bench_search`` (~1M resources grown
  from Synthea by bench/grow_synthea.py); built the same way when it is missing or empty.
- ``sqlite``: a quick run on a smaller SQLite file (``--sqlite-target`` resources, default 100,000, grown the
  same way and loaded with ``fhir-server import``), kept in bench/out/ for the next run.

``--py-spy FILE`` records the server with py-spy during the export (raw collapsed stacks in FILE) and prints
where the export worker thread spends its time.

Usage: python bench/export.py [--backend postgres|sqlite] [--database-url URL] [--sqlite-target N]
                              [--file-resources N] [--poll S] [--sample S] [--py-spy FILE] [--keep-files]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import server
from bench.grow_synthea import REPO
from bench.search import DEFAULT_URL, analyze, count_lines, ensure_data, load

TARGET_PER_SECOND = 50_000
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
PY_SPY = Path(sys.executable).parent / "py-spy"


# ---------------------------------------------------------------- the data


def database_counts(url: str) -> Counter[str]:
    """Current, not deleted resources per type, straight from the ``resource`` table (empty: no database)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT resource_type, count(*) FROM resource WHERE NOT deleted GROUP BY resource_type")
            )
            return Counter({str(t): int(n) for t, n in rows})
    except (OperationalError, ProgrammingError):
        return Counter()
    finally:
        engine.dispose()


def postgres_database(url: str, target: int) -> str:
    """bench/search.py's database, built the way it builds it when missing or empty."""
    if not database_counts(url):
        folder = REPO / "bench" / "out" / f"search-{target}"
        ensure_data(folder, target)
        load(url, folder, jobs=os.cpu_count() or 1)
        analyze(url)
    return url


def sqlite_database(target: int) -> str:
    """A SQLite file of about ``target`` grown Synthea resources in bench/out/, loaded once and reused."""
    path = REPO / "bench" / "out" / f"export-{target}.db"
    url = f"sqlite:///{path}"
    folder = REPO / "bench" / "out" / f"export-{target}"
    ensure_data(folder, target)
    expected = count_lines(folder)
    if sum(database_counts(url).values()) < expected * 0.99:  # missing, or an interrupted load
        path.unlink(missing_ok=True)
        command = [sys.executable, "-m", "fhir_server.cli", "--database-url", url]
        subprocess.run([*command, "migrate"], cwd=REPO, check=True, capture_output=True)
        print(f"importing {expected:,} resources into {path} ...", file=sys.stderr)
        started = time.perf_counter()
        subprocess.run([*command, "import", "--quiet", str(folder)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        print(f"imported in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return url


# ---------------------------------------------------------------- the server process, watched


def server_pid(base_url: str) -> int:
    """The ``fhir-server serve`` child of this process listening on the base URL's port (1 worker: in process)."""
    port = str(urlsplit(base_url).port)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"serve" in argv and port.encode() in argv:
            return int(entry.name)
    raise RuntimeError(f"no server process of mine on port {port}")


def status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Watch:
    """RSS of the server sampled every ``every`` seconds in a thread, until ``stop``."""

    pid: int
    every: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds since start, RSS kB, anon kB)
    started: float = field(default_factory=time.perf_counter)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.cpu_start = cpu_seconds(self.pid)
        self.machine_start = machine_busy()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._sample()
            self.stopping.wait(self.every)

    def _sample(self) -> None:
        rss, anon = status_kb(self.pid, "VmRSS"), status_kb(self.pid, "RssAnon")
        self.samples.append((time.perf_counter() - self.started, rss, anon))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self._sample()
        self.cpu = cpu_seconds(self.pid) - self.cpu_start
        busy, total = machine_busy()
        self.machine = (busy - self.machine_start[0]) / max(1, total - self.machine_start[1])


@contextmanager
def py_spy(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy recording the server (raw collapsed stacks, one line per stack, thread names kept) meanwhile."""
    if output is None:
        yield
        return
    command = [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--threads", "--rate", "200"]
    recorder = subprocess.Popen([*command, "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)  # attached
    try:
        yield
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes its file and exits
        recorder.wait(timeout=60)


def print_profile(path: Path, thread: str = "export-worker", top: int = 18) -> None:
    """Self and inclusive share of the frames of ``thread``'s stacks in a py-spy raw file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or thread not in frames[0]:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    if not total:
        print(f"py-spy: no samples of thread {thread!r} in {path}")
        return
    print(f"\npy-spy, thread {thread}: {total} samples; self time")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("inclusive time")
    for frame, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")


# ---------------------------------------------------------------- the export


@dataclass
class Result:
    seconds: float
    manifest: dict[str, object]
    watch: Watch
    peak_kb: int
    baseline_kb: int
    polls: int


def export(base: str, pid: int, poll: float, sample: float, profile: Path | None) -> Result:
    with httpx.Client(base_url=base + "/", timeout=120, trust_env=False) as http:
        http.get("Patient", params={"_count": "1"}).raise_for_status()  # warm: connections, imports
        baseline = status_kb(pid, "VmRSS")
        with py_spy(pid, profile):
            watch = Watch(pid, sample)
            started = time.perf_counter()
            kickoff = http.get("$export", headers={"Prefer": "respond-async"})
            if kickoff.status_code != 202:
                raise SystemExit(f"kick-off answered {kickoff.status_code}: {kickoff.text}")
            status_url = kickoff.headers["content-location"]
            polls, last_said = 0, started
            while True:
                response = http.get(status_url)
                polls += 1
                if response.status_code != 202:
                    break
                if time.perf_counter() - last_said > 10:
                    last_said = time.perf_counter()
                    print(f"  {last_said - started:5.0f} s: {response.headers.get('x-progress')}", file=sys.stderr)
                time.sleep(poll)
            seconds = time.perf_counter() - started
            watch.stop()
        if response.status_code != 200:
            raise SystemExit(f"the export ended with {response.status_code}: {response.text}")
        return Result(seconds, response.json(), watch, status_kb(pid, "VmHWM"), baseline, polls)


def file_lines(folder: Path) -> Counter[str]:
    """Lines per type in the NDJSON files written (``Type-N.ndjson``)."""
    found: Counter[str] = Counter()
    for path in folder.glob("*.ndjson"):
        with path.open("rb") as f:
            while chunk := f.read(1 << 24):
                found[path.name.rsplit("-", 1)[0]] += chunk.count(b"\n")
    return found


def report(result: Result, database: Counter[str], written: Counter[str], args: argparse.Namespace) -> None:
    manifest: Counter[str] = Counter()
    for item in result.manifest["output"]:  # type: ignore[attr-defined]
        manifest[item["type"]] += item["count"]
    total = sum(manifest.values())
    rate = total / result.seconds
    samples = result.watch.samples
    rss = [kb for _, kb, _ in samples]
    anon = [kb for _, _, kb in samples]
    picks = {"start": samples[0], "1/4": samples[len(samples) // 4], "middle": samples[len(samples) // 2]}
    picks |= {"3/4": samples[3 * len(samples) // 4], "end": samples[-1]}
    print(f"\n$export (system level, every type) on {args.backend}: {total:,} resources in {result.seconds:.1f} s")
    print(
        f"  {rate:,.0f} resources/s   target >= {TARGET_PER_SECOND:,}/s: {'ok' if rate >= TARGET_PER_SECOND else 'BELOW'}"
    )
    print(f"  {len(result.manifest['output']):,} files of up to {args.file_resources:,} resources")  # type: ignore[arg-type]
    print(
        f"  server CPU {result.watch.cpu:.1f} s = {100 * result.watch.cpu / result.seconds:.0f}% of one core; "
        f"machine busy {100 * result.watch.machine:.0f}% of {os.cpu_count()} cores; {result.polls} status polls"
    )
    print(
        f"  server RSS: {result.baseline_kb / 1024:.0f} MB before the kick-off; during the export min "
        f"{min(rss) / 1024:.0f} MB, max {max(rss) / 1024:.0f} MB over {len(rss)} samples (anonymous: min "
        f"{min(anon) / 1024:.0f} MB, max {max(anon) / 1024:.0f} MB); VmHWM (peak of the process's life) "
        f"{result.peak_kb / 1024:.0f} MB"
    )
    print(
        "  RSS (anonymous) samples: "
        + ", ".join(f"{name} ({t:.0f} s) {kb / 1024:.0f} ({a / 1024:.0f}) MB" for name, (t, kb, a) in picks.items())
    )
    print(f"\n  {'type':28s} {'manifest':>10s} {'database':>10s} {'file lines':>10s}")
    mismatches = 0
    for resource_type in sorted(set(manifest) | set(database), key=lambda t: -database[t]):
        same = manifest[resource_type] == database[resource_type] == written[resource_type]
        mismatches += not same
        mark = "" if same else "  MISMATCH"
        print(
            f"  {resource_type:28s} {manifest[resource_type]:>10,} {database[resource_type]:>10,} "
            f"{written[resource_type]:>10,}{mark}"
        )
    print(f"  {'total':28s} {total:>10,} {sum(database.values()):>10,} {sum(written.values()):>10,}")
    print("  every type matches" if not mismatches else f"  {mismatches} types do not match")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--database-url", default=DEFAULT_URL, help=f"PostgreSQL database (default {DEFAULT_URL})")
    parser.add_argument("--target", type=int, default=1_000_000, help="resources when building the PostgreSQL one")
    parser.add_argument("--sqlite-target", type=int, default=100_000, help="resources in the SQLite database")
    parser.add_argument("--file-resources", type=int, default=100_000, help="FHIR_EXPORT_FILE_RESOURCES")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between status polls")
    parser.add_argument("--sample", type=float, default=0.25, help="seconds between RSS samples")
    parser.add_argument("--py-spy", type=Path, dest="profile", help="record the server with py-spy into this file")
    parser.add_argument("--keep-files", action="store_true", help="print the export folder and keep it")
    args = parser.parse_args()
    if args.backend == "postgres":
        url = postgres_database(args.database_url, args.target)
    else:
        url = sqlite_database(args.sqlite_target)
    database = database_counts(url)
    print(f"database: {sum(database.values()):,} resources of {len(database)} types ({url})", file=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="export-bench-"))
    env = {"FHIR_EXPORT_DIR": str(folder), "FHIR_EXPORT_FILE_RESOURCES": str(args.file_resources)}
    try:
        with server.running_server(url, 1, env=env) as base:
            pid = server_pid(base)
            before = os.getloadavg()[0]
            result = export(base, pid, args.poll, args.sample, args.profile)
        job = result.manifest["output"][0]["url"].split("/")[-2]  # type: ignore[index]
        report(result, database, file_lines(folder / job), args)
        print(f"  machine load average {before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)")
        if args.profile is not None:
            print_profile(args.profile)
    finally:
        if args.keep_files:
            print(f"export files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
