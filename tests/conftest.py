"""Shared fixtures: a real server on loopback for each backend (SQLite file, PostgreSQL schema), Redis.

PostgreSQL: ``FHIR_TEST_POSTGRES_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test); each
session works in a fresh schema that is dropped afterwards. Outside CI a missing server skips those tests
with the reason; in CI (``CI=true``) it fails them.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.shared_data import IN_CI

POSTGRES_URL = os.environ.get("FHIR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("FHIR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ["sqlite", "postgres"]


def unavailable(message: str) -> None:
    """Skip outside CI; fail in CI, where every service must be there."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    admin = create_engine(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        admin.dispose()
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.__class__.__name__}: {exc}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """The session's PostgreSQL schema, shared by the session's server."""
    with postgres_schema() as url:
        yield url


@contextmanager
def fresh_database(database_url: str, folder: Path) -> Iterator[str]:
    """An empty database of the same backend as ``database_url`` (a SQLite file in ``folder``)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{folder / 'fresh.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the same backend as ``database_url``, for tests that need a clean slate."""
    with fresh_database(database_url, tmp_path) as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'fhir.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """The app served by uvicorn in a background thread, reachable over real HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def live_server(database_url: str, **settings: object) -> LiveServer:
    """A server on a free port; authorization off unless the test asks (``auth=True``), and no $export
    workers unless it asks (``export_workers=N``): servers sharing a database would take each other's jobs."""
    settings.setdefault("auth", False)
    settings.setdefault("mllp_port", 0)
    settings.setdefault("export_workers", 0)
    port = free_port()
    return LiveServer(
        Settings(database_url=database_url, base_url=f"http://127.0.0.1:{port}/fhir", port=port, **settings)  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[LiveServer]:
    with live_server(database_url) as running:
        yield running


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url + "/", timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:
        unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


def unique(prefix: str = "t") -> str:
    """A value no other test uses (identifiers, names), so tests can share one server."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"
