"""Revocation is seen by every process: two store instances stand for two server workers sharing one
database (SQLite, PostgreSQL) or one Redis. The revoking one knows at once; the other within the
listener's delivery, and, while its listener is down, by asking the store itself."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.model import utc_now
from smart_auth.revocation import Revocations, revocations


@pytest.fixture(params=["database", "redis"])
def pair(request: pytest.FixtureRequest, fresh_database_url: str) -> Iterator[tuple[Revocations, Revocations]]:
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    redis_url = str(request.getfixturevalue("redis_url")) if request.param == "redis" else None
    first, second = revocations(engine, redis_url), revocations(engine, redis_url)
    yield first, second
    first.close()
    second.close()
    engine.dispose()


def _eventually(check: Revocations, key: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if check.is_revoked(key):
            return True
        time.sleep(0.01)
    return False


def test_a_revocation_reaches_the_other_process(pair: tuple[Revocations, Revocations]) -> None:
    first, second = pair
    key = f"jti:{uuid.uuid4().hex}"
    time.sleep(0.5)  # let both listeners subscribe, so the second learns it by notification
    mirror = getattr(second, "mirror", None)
    assert mirror is None or mirror.healthy  # SQLite has no listener: it reads the table each time
    assert not second.is_revoked(key, "grant:none")
    first.revoke(key, utc_now() + timedelta(minutes=5))
    assert first.is_revoked("grant:other", key)  # the revoking process: at once
    assert _eventually(second, key)


def test_revocations_made_before_start_are_loaded(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    early = revocations(engine, None)
    key = f"grant:{uuid.uuid4().hex}"
    early.revoke(key, utc_now() + timedelta(minutes=5))
    late = revocations(engine, None)
    assert late.is_revoked(key)  # before its listener is up: asks the table
    time.sleep(0.5)
    assert late.is_revoked(key)  # after: from the loaded snapshot
    early.close()
    late.close()
    engine.dispose()


def test_expired_revocations_no_longer_count(pair: tuple[Revocations, Revocations]) -> None:
    first, _ = pair
    key = f"jti:{uuid.uuid4().hex}"
    first.revoke(key, utc_now() - timedelta(seconds=1))
    assert not first.is_revoked(key)
