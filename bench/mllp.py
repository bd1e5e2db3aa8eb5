"""HL7 v2 over MLLP into a real ``fhir-server mllp`` process: ORU^R01 lab messages (the shared
``35_ORU_R01_lab.hl7``, each with its own MSH-10 and order numbers and, unless --same-patient, its own
patient) sent over
N connections, original mode, each connection waiting for its ACK (sent after the commit) before
sending the next message. Prints msg/s and ACK latency percentiles.

    .venv/bin/python -m bench.mllp [--backend postgres|sqlite] [--connections 8] [--messages 4000]
                                   [--workers 1] [--same-patient] [--profile flame.svg]

``--profile`` runs the server under py-spy (``py-spy record``) and writes a flame graph.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.server import REPO, database, free_port
from hl7_gateway.mllp import Deframer, frame

SAMPLE = Path(os.environ.get("FHIR_SHARED_DATA", REPO.parent / "shared" / "data")) / "hl7v2" / "35_ORU_R01_lab.hl7"


def messages(count: int, same_patient: bool) -> list[bytes]:
    """``count`` copies of the lab sample, each with a unique MSH-10 (and PID-3 unless ``same_patient``)."""
    text = SAMPLE.read_bytes().removeprefix(b"\xef\xbb\xbf").decode().replace("\r\n", "\r").replace("\n", "\r")
    run = uuid.uuid4().hex[:8]
    out = []
    for n in range(count):
        lines = text.split("\r")
        msh = lines[0].split("|")
        msh[9] = f"{run}-{n}"
        lines[0] = "|".join(msh)
        if not same_patient:
            lines = [line.replace("10006579", f"{run}{n}") if line.startswith("PID") else line for line in lines]
        lines = [_unique_order(line, f"{run}{n}") if line.startswith("OBR") else line for line in lines]
        out.append("\r".join(lines).encode())
    return out


def _unique_order(obr: str, suffix: str) -> str:
    """OBR with its own placer (OBR-2) and filler (OBR-3) order numbers: each message reports new orders."""
    fields = obr.split("|")
    fields[2], fields[3] = f"{fields[2]}-{suffix}", f"{fields[3]}-{suffix}"
    return "|".join(fields)


async def connection(port: int, batch: list[bytes], latencies: list[float], codes: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    deframer = Deframer()
    for message in batch:
        started = time.perf_counter()
        writer.write(frame(message))
        acks: list[bytes] = []
        while not acks:
            data = await reader.read(65536)
            if not data:
                raise RuntimeError("the listener closed the connection")
            acks = [a for a in deframer.feed(data) if isinstance(a, bytes)]
        latencies.append(time.perf_counter() - started)
        code = acks[0].split(b"\rMSA|", 1)[1][:2].decode()
        codes[code] = codes.get(code, 0) + 1
    writer.close()


async def drive(port: int, all_messages: list[bytes], connections: int) -> tuple[float, list[float], dict[str, int]]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    started = time.perf_counter()
    await asyncio.gather(
        *(connection(port, all_messages[i::connections], latencies, codes) for i in range(connections))
    )
    return time.perf_counter() - started, latencies, codes


def start_listener(database_url: str, profile: str | None, workers: int = 1) -> tuple[subprocess.Popen[bytes], int]:
    """``fhir-server mllp`` on a free port, in ``workers`` processes sharing it (SO_REUSEPORT)."""
    port = free_port()
    command = [sys.executable, "-m", "fhir_server.cli", "mllp", "--port", str(port), "--workers", str(workers)]
    if profile:
        raw = ["--format", "raw"] if profile.endswith(".txt") else []  # collapsed stacks instead of an SVG
        command = [str(Path(sys.executable).parent / "py-spy"), "record", *raw, "-o", profile, "--", *command]
    env = {**os.environ, "FHIR_DATABASE_URL": database_url}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the listener did not start") from None
            time.sleep(0.1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--same-patient", action="store_true", help="every message for one patient")
    parser.add_argument("--profile", help="write a py-spy flame graph of the server to this file")
    parser.add_argument("--workers", type=int, default=1, help="listener processes (mllp --workers)")
    args = parser.parse_args()
    with database(args.backend) as url:
        process, port = start_listener(url, args.profile, args.workers)
        try:
            warm = messages(args.warmup, args.same_patient)
            asyncio.run(drive(port, warm, args.connections))
            batch = messages(args.messages, args.same_patient)
            elapsed, latencies, codes = asyncio.run(drive(port, batch, args.connections))
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(
        f"{args.backend}, {args.workers} process(es): {len(batch)} ORU^R01 over {args.connections} "
        f"connections in {elapsed:.1f} s: "
        f"{len(batch) / elapsed:,.0f} msg/s; ACK latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; ACK codes {codes}"
    )


if __name__ == "__main__":
    main()
