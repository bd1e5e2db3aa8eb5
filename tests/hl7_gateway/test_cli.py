"""``fhir-server mllp`` as its own process, driven by python-hl7's ``mllp_send`` (a client we did not write)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.shared_data import shared


@pytest.fixture
def listener(fresh_database_url: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "mllp", "--port", str(port)],
        env={**os.environ, "FHIR_DATABASE_URL": fresh_database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"listener did not start: {process.stderr.read().decode() if process.stderr else ''}"
                ) from exc
            time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(timeout=30)


def test_mllp_send_gets_accept_acknowledgements(listener: int) -> None:
    mllp_send = shutil.which("mllp_send") or str(Path(sys.executable).parent / "mllp_send")
    sample = shared("hl7v2", "35_ORU_R01_lab.hl7")
    result = subprocess.run(
        [mllp_send, "--loose", "--file", str(sample), "--port", str(listener), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "MSA|AA|" in result.stdout.replace("\n", "\r")
