"""Benchmark the pure HL7 v2 path: decode + parse (ours vs python-hl7) and map_message.

Usage: python -m bench.mappers [--repeat 2000]

Prints best-of-5 CPU microseconds per message over every shared sample in ``../shared/data/hl7v2`` and
over ``35_ORU_R01_lab.hl7`` alone. python-hl7 gets the text already decoded and CR-separated (it raises
on a BOM and on blank lines, and splits only on CR), so its figure is parsing only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import hl7

from mappers.messages import map_message
from mappers.v2 import decode, parse

SAMPLES = Path(os.environ.get("FHIR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "hl7v2"
LAB = "35_ORU_R01_lab.hl7"


def microseconds_per_call(items: list[object], work: Callable[[object], object], repeat: int) -> float:
    """Best-of-5 CPU microseconds per item of ``work`` over ``items``, ``repeat`` passes per round."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeat):
            for item in items:
                work(item)
        best = min(best, time.process_time() - start)
    return best / (repeat * len(items)) * 1e6


def python_hl7_text(raw: bytes) -> str:
    """The text python-hl7 accepts: decoded by us, blank and comment lines removed."""
    lines = decode(raw).split("\r")
    return "\r".join(line for line in lines if line.strip() and not line.startswith("//"))


def report(label: str, raws: list[bytes], repeat: int) -> None:
    """Print the three figures for ``raws``."""
    texts = [python_hl7_text(raw) for raw in raws]
    ours = microseconds_per_call(list(raws), lambda raw: parse(decode(raw)), repeat)  # type: ignore[arg-type]
    theirs = microseconds_per_call(list(texts), hl7.parse, repeat)
    print(f"{label}: decode+parse ours {ours:8.1f} µs/msg | hl7.parse (parse only) {theirs:8.1f} µs/msg")


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    repeat = parser.parse_args().repeat
    raws = [path.read_bytes() for path in sorted(SAMPLES.glob("*.hl7"))]
    report(f"all {len(raws)} samples", raws, max(1, repeat // 20))
    lab = (SAMPLES / LAB).read_bytes()
    report(LAB, [lab], repeat)
    message = parse(decode(lab))
    mapped = microseconds_per_call([message], map_message, repeat)  # type: ignore[arg-type]
    end_to_end = microseconds_per_call([lab], lambda raw: map_message(parse(decode(raw))), repeat)  # type: ignore[arg-type]
    print(f"{LAB}: map_message {mapped:8.1f} µs/msg | decode+parse+map {end_to_end:8.1f} µs/msg")


if __name__ == "__main__":
    main()
