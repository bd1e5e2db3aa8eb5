"""Start a real ``fhir-server serve`` process on a fresh database for a benchmark, and stop it after.

Backends: ``sqlite`` (a file in a temp folder) or ``postgres`` (a throw-away schema in
``FHIR_BENCH_POSTGRES_URL``, default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent

POSTGRES = os.environ.get("FHIR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database URL for ``backend``."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    database_url: str, workers: int = 1, *, program: list[str] | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``fhir-server serve`` on a free port (or ``program`` taking the same arguments); yields the base URL.

    ``env`` adds variables to (or, with an empty value, removes them from) the server's environment.
    Authorization is off unless ``env`` turns it on (``FHIR_AUTH=on``): the other benches measure the
    FHIR interactions; ``bench/auth.py`` measures what tokens cost.
    """
    port = free_port()
    environment = {**os.environ, "FHIR_DATABASE_URL": database_url, "FHIR_AUTH": "off"}
    environment.pop("FHIR_BASE_URL", None)
    for name, value in (env or {}).items():
        if value:
            environment[name] = value
        else:
            environment.pop(name, None)
    command = program or [sys.executable, "-m", "fhir_server.cli"]
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--workers", str(workers)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        _wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(base: str, process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not become ready")
